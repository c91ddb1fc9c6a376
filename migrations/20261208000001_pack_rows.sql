-- A message may be a pack of rows (docs/api.md, "Wire format"): each row of a pack that is
-- dead-lettered is kept, by its place in the message.
ALTER TABLE csvbus.dead_letters ADD COLUMN row_in_message integer NOT NULL DEFAULT 0;
ALTER TABLE csvbus.dead_letters DROP CONSTRAINT dead_letters_group_id_topic_partition_offset_key;
ALTER TABLE csvbus.dead_letters
    ADD CONSTRAINT dead_letters_message_row UNIQUE (group_id, topic, partition, "offset", row_in_message);
