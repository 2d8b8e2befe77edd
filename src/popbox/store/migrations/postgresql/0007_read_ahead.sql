-- popbox PostgreSQL schema, version 7: the leases that let a session read bodies ahead
-- of its RETRs and still answer -ERR for a message removed meanwhile (C0004).  How the
-- pieces fit is told in popbox.store.postgres_readahead.

-- One row per mailbox some session has read ahead in: until when (the database's clock,
-- POSIX seconds) the last holder's copies may be used, who that holder was, and until
-- when every earlier holder's may.  UNLOGGED: a stamp costs no WAL and no flush.  A
-- crash, or a standby promoted in a failover, empties the table; the row with user_id 0
-- is then missing as well, and that tells a removal that copies it cannot see may still
-- be in use (it waits out one whole lifetime, then puts the row back).  No foreign key:
-- a deleted user's row is removed by delete_user itself, and row 0 has no user.
CREATE UNLOGGED TABLE read_ahead (
    user_id      bigint PRIMARY KEY,
    holder       text COLLATE "C" NOT NULL,
    until        double precision NOT NULL,
    others_until double precision NOT NULL
);
INSERT INTO read_ahead (user_id, holder, until, others_until) VALUES (0, '', 0, 0);

-- A session's read-ahead: stamp the lease, then read the bodies, in one round trip.  The
-- stamp takes the mailbox's read_ahead row lock, which a removal holds while it waits
-- for the leases to run out; the bodies are read by a later statement, so with a fresh
-- snapshot (READ COMMITTED): either the removal saw this stamp, or this read sees the
-- removal.  Returns nothing for an unknown user.
CREATE FUNCTION popbox_read_ahead(p_name text, p_holder text, p_uids bigint[], p_lifetime float8)
RETURNS TABLE (uid bigint, wire bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_user bigint;
    v_until float8;
BEGIN
    SELECT u.id INTO v_user FROM users AS u WHERE u.name = p_name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_until := extract(epoch FROM clock_timestamp()) + p_lifetime;
    INSERT INTO read_ahead AS r (user_id, holder, until, others_until)
    VALUES (v_user, p_holder, v_until, 0)
    ON CONFLICT (user_id) DO UPDATE SET
        others_until = CASE WHEN r.holder = p_holder THEN r.others_until
                            ELSE greatest(r.others_until, r.until) END,
        holder = p_holder,
        until = greatest(r.until, v_until);
    RETURN QUERY
        SELECT m.uid, m.wire FROM messages AS m
        WHERE m.user_id = v_user AND m.uid = ANY (p_uids);
END
$$;
