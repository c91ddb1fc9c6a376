-- The roles csvbus runs as, each with only the grants it needs. compose.yaml runs this once, as
-- the image's superuser, on an empty volume (docker-entrypoint-initdb.d); for another Postgres,
-- run it as a superuser in csvbus' database and change the passwords. It can run again.
--
--   csvbus_migrate  applies csvbus' migrations (`csvbus migrate`): owns the `csvbus` schema.
--   csvbus_app      the upload service and the sinks: reads and writes csvbus' own tables,
--                   creates staging tables in `csvbus`, writes the target tables of the
--                   schemas it may write (CSVBUS_ALLOWED_SCHEMAS: `public` here) and, for
--                   `create=true`, creates tables there. Not a superuser, creates no roles
--                   or databases, owns none of csvbus' tables (cannot alter or drop them).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'csvbus_migrate') THEN
        CREATE ROLE csvbus_migrate LOGIN PASSWORD 'csvbus_migrate';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'csvbus_app') THEN
        CREATE ROLE csvbus_app LOGIN PASSWORD 'csvbus_app';
    END IF;
END
$$;

-- csvbus' own state: its schema belongs to the migrating role; the migrations table is in public.
-- (The first migration's CREATE SCHEMA IF NOT EXISTS needs CREATE on the database.)
CREATE SCHEMA IF NOT EXISTS csvbus AUTHORIZATION csvbus_migrate;
DO $$
BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO csvbus_migrate', current_database());
END
$$;
GRANT USAGE, CREATE ON SCHEMA public TO csvbus_migrate;

-- The services: every table the migrations create in `csvbus`, read and written (no DDL on
-- them); their own staging tables (CREATE in `csvbus`); the migrations table, read (the
-- services check at start that the schema is current).
GRANT USAGE, CREATE ON SCHEMA csvbus TO csvbus_app;
ALTER DEFAULT PRIVILEGES FOR ROLE csvbus_migrate IN SCHEMA csvbus
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO csvbus_app;
ALTER DEFAULT PRIVILEGES FOR ROLE csvbus_migrate IN SCHEMA csvbus
    GRANT USAGE, SELECT ON SEQUENCES TO csvbus_app;
ALTER DEFAULT PRIVILEGES FOR ROLE csvbus_migrate IN SCHEMA public
    GRANT SELECT ON TABLES TO csvbus_app;

-- Target tables: in `public`, the tables the superuser (or whoever runs this) creates are
-- readable and writable (append: INSERT; upsert: UPDATE; replace: DELETE); CREATE lets
-- `create=true` make new ones, which csvbus_app then owns. Tables of other owners need a
-- GRANT SELECT, INSERT, UPDATE, DELETE of their own.
GRANT USAGE, CREATE ON SCHEMA public TO csvbus_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO csvbus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO csvbus_app;

-- Run again on a database already migrated: the migrations table stays read-only to the services.
DO $$
BEGIN
    IF to_regclass('public._sqlx_migrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE ON public._sqlx_migrations FROM csvbus_app;
    END IF;
END
$$;
