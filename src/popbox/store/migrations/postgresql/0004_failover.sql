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

-- Brute-force scores shared by every node (popbox.store.postgres_cluster): one row per
-- source IP ("i:...") and per user name ("u:..."), a score that halves every
-- [auth] failure_half_life, and the end of a lockout.  Rows that have faded and are
-- not locked are purged a few at a time by later failures (the index on "at").
CREATE TABLE login_failures (
    key          text COLLATE "C" PRIMARY KEY,
    score        double precision NOT NULL,
    at           double precision NOT NULL,  -- POSIX seconds the score was brought up to date
    locked_until double precision NOT NULL DEFAULT 0
);
CREATE INDEX login_failures_age ON login_failures (at);

-- [server] max_sessions_per_user across nodes: a logged-in session holds one of its
-- user's slots 0..limit-1 under a lease its process renews, so that a crashed node's
-- sessions stop counting once their leases run out.
CREATE TABLE user_sessions (
    user_name text COLLATE "C" NOT NULL,
    slot      integer NOT NULL,
    owner     text COLLATE "C" NOT NULL,  -- the process holding it
    expires   double precision NOT NULL,
    PRIMARY KEY (user_name, slot)
);
CREATE INDEX user_sessions_owner ON user_sessions (owner);
