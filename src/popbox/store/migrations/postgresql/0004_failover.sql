-- popbox PostgreSQL schema, version 4: what failover and a cluster of nodes need.

-- The WAL timeline on which this mailbox's uid counter was last advanced.  A promoted
-- standby is on a new timeline; the first uid given there skips ahead (see
-- popbox.store.postgres_failover.UID_FAILOVER_GAP), so that a uid the old primary
-- handed out in a commit the standby never received is not handed out again.  0: not
-- known yet (the next uid records it without skipping).
ALTER TABLE users ADD COLUMN uid_timeline bigint NOT NULL DEFAULT 0;
UPDATE users SET uid_timeline =
    CASE WHEN pg_is_in_recovery() THEN 0
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END;
