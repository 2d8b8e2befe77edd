-- popbox PostgreSQL schema, version 9: a user added or removed, or a change to what a
-- login reads of one (the name, verifiers, quota and disabled reason), notifies
-- popbox_users with the user's name (both names for a rename), delivered when the
-- change commits, so that every process forgets what it kept of that name
-- (popbox.store.postgres_accounts_copy).  A trigger, so that a change made by any
-- client, an administrator's own SQL included, is heard.  Deliveries update the row's
-- uid counter only, which fires nothing.  EXECUTE PROCEDURE: the spelling every
-- supported server accepts.
CREATE FUNCTION popbox_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('popbox_users', OLD.name);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
        PERFORM pg_notify('popbox_users', NEW.name);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_changed
    AFTER INSERT OR UPDATE OF name, verifiers, quota, disabled OR DELETE ON users
    FOR EACH ROW EXECUTE PROCEDURE popbox_user_changed();
