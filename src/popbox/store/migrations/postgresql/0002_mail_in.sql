-- popbox PostgreSQL schema, version 2: what delivery, import and retention need.
-- The same steps as the SQLite backend's 0002_mail_in.sql, in PostgreSQL's types.

-- E0004: whether this mailbox has been sent its quota warning since usage last crossed
-- the threshold, so that crossing it sends one warning, not one per delivery.  A
-- constant default: PostgreSQL 11+ adds the column without rewriting the table.
ALTER TABLE users ADD COLUMN quota_warned boolean NOT NULL DEFAULT false;

-- The source keys of imported messages, written in the same transaction as the
-- message, so re-running an interrupted import skips exactly what was committed.
-- Kept after the message is deleted: importing the same source again must not bring
-- back mail the user has already removed.
CREATE TABLE import_keys (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key     text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- E0005: the retention sweep finds due messages per mailbox without reading the rows
-- that hold the bodies.  Built inside the migration transaction (CONCURRENTLY cannot
-- be), which holds up deliveries while it runs; on a very large store an administrator
-- may build it CONCURRENTLY first, and IF NOT EXISTS then makes this step cheap.
CREATE INDEX IF NOT EXISTS messages_retention
    ON messages (user_id, retrieved_at, received_at);
