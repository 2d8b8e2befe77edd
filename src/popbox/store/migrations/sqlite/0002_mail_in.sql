-- popbox SQLite schema, version 2: what delivery, import and retention need.

-- E0004: whether this mailbox has been sent its quota warning since usage last crossed
-- the threshold, so that crossing it sends one warning, not one per delivery.
ALTER TABLE users ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0
    CHECK (quota_warned IN (0, 1));

-- The source keys of imported messages, written in the same transaction as the
-- message, so re-running an interrupted import skips exactly what was committed.
-- Kept after the message is deleted: importing the same source again must not bring
-- back mail the user has already removed.
CREATE TABLE import_keys (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key     TEXT    NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;

-- E0005: the retention sweep finds due messages per mailbox without reading the rows
-- that hold the bodies.
CREATE INDEX messages_retention ON messages (user_id, retrieved_at, received_at);
