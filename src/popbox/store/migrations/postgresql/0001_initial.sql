-- popbox PostgreSQL schema, version 1.
-- Applied by popbox.store.postgres inside one transaction with its schema_version row,
-- under an advisory lock, so that several nodes starting together migrate only once.

CREATE TABLE users (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- "C" compares UTF-8 bytes, which is code point order: list_users() promises the
    -- order of Python's sorted(), whatever locale the database was created with.
    name      text COLLATE "C" NOT NULL UNIQUE,
    verifiers jsonb  NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(verifiers) = 'object'),
    quota     bigint CHECK (quota IS NULL OR quota >= 0),  -- NULL: server default (E0003)
    -- The next unique-id to give out.  deliver() locks this row, so it is also what
    -- serialises deliveries to one mailbox across nodes; only ever incremented, so a
    -- deleted message's uid is never reused (C0007-C0009).
    next_uid  bigint NOT NULL DEFAULT 1 CHECK (next_uid >= 1),
    created   double precision NOT NULL
);

CREATE TABLE messages (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    uid          bigint NOT NULL CHECK (uid >= 1),
    size         bigint NOT NULL CHECK (size >= 0),         -- exact RFC 822 size
    stored_size  bigint NOT NULL CHECK (stored_size >= 0),  -- octets of the wire form
    -- POSIX seconds as float8, not timestamptz: the store's API speaks float seconds and
    -- a snapshot must return exactly the value delivered (timestamptz rounds to 1 us).
    received_at  double precision NOT NULL,
    retrieved_at double precision,                          -- first RETR (E0005)
    -- RFC 1939 s7: 1 to 70 characters in 0x21-0x7E.
    legacy_uidl  text COLLATE "C" CHECK (legacy_uidl ~ '^[!-~]{1,70}$'),
    -- bytea, not large objects: a body lives and dies with its row inside the same
    -- transaction (delete() and delete_user() need no lo_unlink and leave no orphans),
    -- TOAST keeps large values out of line (compressed), so queries that do not name
    -- this column never read it, and the binary protocol hands it over as one buffer.
    wire         bytea NOT NULL,
    -- INCLUDE makes the primary key a covering index: the login snapshot and the quota
    -- sum are index-only scans that never visit the rows holding the bodies.
    PRIMARY KEY (user_id, uid) INCLUDE (size, stored_size, received_at, legacy_uidl)
);

CREATE TABLE locks (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    owner   text NOT NULL,
    expires double precision NOT NULL  -- POSIX seconds; an expired lease may be taken over
);
