-- Retention (CSVBUS_RETENTION_DAYS) deletes ended imports and dead letters by age: indexes so
-- that each bounded batch finds its rows without a scan.
CREATE INDEX imports_finished ON csvbus.imports (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX dead_letters_created ON csvbus.dead_letters (created_at);
