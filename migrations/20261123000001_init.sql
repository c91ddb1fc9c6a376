-- csvbus' own state lives in the `csvbus` schema; user tables never do.
CREATE SCHEMA IF NOT EXISTS csvbus;

-- One row per upload ("import").
CREATE TABLE csvbus.imports (
    id                  uuid PRIMARY KEY,
    target_schema       text        NOT NULL,
    target_table        text        NOT NULL,
    -- The CSV header, in file order: the columns every message of this import carries.
    columns             text[]      NOT NULL,
    -- receiving: the body is being read; produced: every row is acknowledged by the broker;
    -- completed: the sink wrote (or rejected) every produced row; failed / aborted: the upload
    -- stopped early (rows produced before stay and are still written by the sink).
    status              text        NOT NULL DEFAULT 'receiving'
                        CHECK (status IN ('receiving', 'produced', 'completed', 'failed', 'aborted')),
    rows_received       bigint      NOT NULL DEFAULT 0,
    rows_produced       bigint      NOT NULL DEFAULT 0,
    -- Rows the upload service rejected (CSV errors) / the sink rejected (Postgres data errors).
    rows_rejected       bigint      NOT NULL DEFAULT 0,
    rows_written        bigint      NOT NULL DEFAULT 0,
    rows_write_rejected bigint      NOT NULL DEFAULT 0,
    bytes_received      bigint      NOT NULL DEFAULT 0,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    produced_at         timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX imports_created_at ON csvbus.imports (created_at);

-- Rows that did not make it into the target table, with where and why.
CREATE TABLE csvbus.rejected_rows (
    id          bigserial   PRIMARY KEY,
    import_id   uuid        NOT NULL REFERENCES csvbus.imports (id) ON DELETE CASCADE,
    line        bigint      NOT NULL,
    -- 'parse' (upload service: CSV/encoding) or 'write' (sink: Postgres refused the values).
    stage       text        NOT NULL CHECK (stage IN ('parse', 'write')),
    reason      text        NOT NULL,
    -- The record's text as it was in the file (parse stage, truncated to a bound).
    raw         text,
    -- The values as sent to Postgres (write stage): {column: text | null}.
    fields      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_rows_import_line ON csvbus.rejected_rows (import_id, line);

-- The sink's consumed position per partition, committed in the same transaction as the rows it
-- covers: the truth for exactly-once. Kafka's committed offsets are only a hint.
CREATE TABLE csvbus.sink_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    -- The offset of the next message to write (Kafka convention: last written + 1).
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
