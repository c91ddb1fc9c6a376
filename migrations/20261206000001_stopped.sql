-- The write stage's bound: an import whose rows Postgres refused more often than its
-- max_rejected allows is stopped (failed); its later rows are set aside, counted, not written.
ALTER TABLE csvbus.imports ADD COLUMN stopped boolean NOT NULL DEFAULT false;
ALTER TABLE csvbus.imports ADD COLUMN rows_set_aside bigint NOT NULL DEFAULT 0;
