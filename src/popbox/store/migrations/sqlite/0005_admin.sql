-- popbox SQLite schema, version 5: the admin API's tokens.
-- A token is stored as the SHA-256 of its secret only: the secret is shown once, when
-- it is created, and a stolen database does not let anyone call the API.
CREATE TABLE admin_tokens (
    id         TEXT    PRIMARY KEY,
    digest     TEXT    NOT NULL UNIQUE,          -- hex SHA-256 of the secret
    scope      TEXT    NOT NULL CHECK (scope IN ('read', 'admin')),
    note       TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL,
    expires_at REAL                              -- NULL: never
) WITHOUT ROWID;
