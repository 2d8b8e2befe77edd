-- popbox SQLite schema, version 1.
-- Applied by popbox.store.migrate inside one transaction with its schema_version row.

CREATE TABLE users (
    id        INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL UNIQUE,
    verifiers TEXT    NOT NULL DEFAULT '{}',          -- JSON object: scheme -> verifier
    quota     INTEGER CHECK (quota IS NULL OR quota >= 0),  -- NULL: server default (E0003)
    -- The next unique-id to give out; only ever incremented, so a deleted message's
    -- uid is never reused (C0007-C0009).
    next_uid  INTEGER NOT NULL DEFAULT 1 CHECK (next_uid >= 1),
    created   REAL    NOT NULL
);

CREATE TABLE messages (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    uid          INTEGER NOT NULL CHECK (uid >= 1),
    size         INTEGER NOT NULL CHECK (size >= 0),         -- exact RFC 822 size
    stored_size  INTEGER NOT NULL CHECK (stored_size >= 0),  -- octets of the wire form
    received_at  REAL    NOT NULL,
    retrieved_at REAL,                                       -- first RETR (E0005)
    legacy_uidl  TEXT,
    -- Last column: SQLite spills a large value to overflow pages, so reading the
    -- columns before it never touches the body.
    wire         BLOB    NOT NULL,
    PRIMARY KEY (user_id, uid)
);

-- Covers the login snapshot and the quota sum, so STAT/LIST/UIDL and delivery read
-- small index pages only, never the table rows that hold the bodies.
CREATE INDEX messages_snapshot
    ON messages (user_id, uid, size, stored_size, received_at, legacy_uidl);

CREATE TABLE locks (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    owner   TEXT NOT NULL,
    expires REAL NOT NULL  -- POSIX seconds; an expired lease may be taken over
);
