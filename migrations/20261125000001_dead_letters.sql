-- Messages on the topic that are not csvbus rows the sink may write: no or invalid csvbus
-- headers, an unknown import, a target that is not allowed, a value that is not a row of its
-- import. Kept with where they were and why, written in the same transaction as the position
-- that passes them: each is recorded exactly once per consumer group.
CREATE TABLE csvbus.dead_letters (
    id            bigserial   PRIMARY KEY,
    group_id      text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    reason        text        NOT NULL,
    -- Headers as {name: text} (invalid UTF-8 replaced), the key and the value's first 64 KiB.
    headers       jsonb,
    key           bytea,
    payload       bytea,
    payload_bytes integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, topic, partition, "offset")
);
