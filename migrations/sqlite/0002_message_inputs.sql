-- The input document moves to a table of its own. It never changes after a
-- message is accepted, while its row in `messages` is rewritten by every attempt:
-- SQLite rewrites a whole row (and its page) on update, so with the input inline
-- each attempt wrote the ~1 KB document again. Same seq as the message.
CREATE TABLE message_inputs (
    seq   INTEGER PRIMARY KEY,                          -- messages.seq
    input TEXT    NOT NULL
);
INSERT INTO message_inputs (seq, input) SELECT seq, input FROM messages;
ALTER TABLE messages DROP COLUMN input;
