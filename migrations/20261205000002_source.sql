-- Where an import came from: the file name the page and the CLI send (`name=`), or the
-- `Content-Disposition` filename of other clients. Shown in the imports list; at most 255
-- characters (checked by the upload service).
ALTER TABLE csvbus.imports ADD COLUMN source text;
