-- The status code of the `fail` step that ended a message, so that a sync caller
-- waiting on one node for a message run on another gets the flow's own answer.
ALTER TABLE messages ADD COLUMN fail_status INTEGER;
