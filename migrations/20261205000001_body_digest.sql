-- The digest (xxh3-128, hex) of an import's body as decoded, saved once an upload read it to
-- its end: a repeat under the import's Idempotency-Key with other bytes is a mismatch, not a
-- replay of the first answer. NULL for imports whose body was never read whole.
ALTER TABLE csvbus.imports ADD COLUMN body_digest text;
