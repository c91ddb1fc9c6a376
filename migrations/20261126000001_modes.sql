-- Import modes (append, atomic, replace, upsert, skip) and resumable, idempotent uploads.
ALTER TABLE csvbus.imports
    ADD COLUMN mode text NOT NULL DEFAULT 'append'
        CHECK (mode IN ('append', 'atomic', 'replace', 'upsert', 'skip')),
    -- upsert / skip: the ON CONFLICT columns (a unique index covers exactly these).
    ADD COLUMN conflict_columns text[],
    -- The import's max_rejected: an atomic move refusing more rows than this is rolled back.
    ADD COLUMN max_rejected bigint NOT NULL DEFAULT 100,
    -- skip: rows not written because a row with their key was already there.
    ADD COLUMN rows_skipped bigint NOT NULL DEFAULT 0,
    -- The client's Idempotency-Key, unique while it has not expired.
    ADD COLUMN idempotency_key text,
    ADD COLUMN key_expires_at timestamptz,
    -- The upload's checkpoint: every record up to this line was acknowledged by the broker or
    -- rejected; `acked_rows` of them were produced; `acked_digest` is the chained hash of their
    -- bytes (a retry under the same key must read the same bytes up to there).
    ADD COLUMN acked_line bigint NOT NULL DEFAULT 0,
    ADD COLUMN acked_rows bigint NOT NULL DEFAULT 0,
    ADD COLUMN acked_digest bigint NOT NULL DEFAULT 0,
    -- Set when a retry resumed the import: records up to this line were skipped.
    ADD COLUMN resumed_from_line bigint,
    ADD COLUMN attempts integer NOT NULL DEFAULT 1;

CREATE UNIQUE INDEX imports_idempotency_key ON csvbus.imports (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX imports_produced ON csvbus.imports (id) WHERE status = 'produced';

-- The highest line of each import the sink wrote (or rejected) per partition, in the same
-- transaction as the rows. Within a partition an upload's lines only grow, and a resumed upload
-- sends the lines after its checkpoint to the same partitions again: a line at or below this
-- mark was handled already (by an earlier attempt) and is not written twice.
CREATE TABLE csvbus.import_partitions (
    import_id uuid    NOT NULL REFERENCES csvbus.imports (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    max_line  bigint  NOT NULL,
    PRIMARY KEY (import_id, partition)
);
