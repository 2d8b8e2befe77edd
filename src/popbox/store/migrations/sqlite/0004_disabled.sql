-- popbox SQLite schema, version 4: disabled accounts (`popbox user disable`).
-- NULL: the user may log in; otherwise the reason a login with the right password is
-- told ('' when the administrator gave none).  Mail is still delivered.
ALTER TABLE users ADD COLUMN disabled TEXT;
