-- How an upload's bytes were read: delimiter and encoding (given or detected), skipped
-- preamble lines, header mapping onto the table's columns, notes on what detection was unsure
-- of, and the CREATE TABLE of a create=true import. NULL for imports from before.
ALTER TABLE csvbus.imports ADD COLUMN read_as jsonb;
