-- popbox PostgreSQL schema, version 6: the admin API's tokens.
-- A token is stored as the SHA-256 of its secret only: the secret is shown once, when
-- it is created, and a stolen database does not let anyone call the API.
CREATE TABLE admin_tokens (
    id         text COLLATE "C" PRIMARY KEY,
    digest     text COLLATE "C" NOT NULL UNIQUE,  -- hex SHA-256 of the secret
    scope      text NOT NULL CHECK (scope IN ('read', 'admin')),
    note       text NOT NULL DEFAULT '',
    created_at double precision NOT NULL,
    expires_at double precision                   -- NULL: never
);
