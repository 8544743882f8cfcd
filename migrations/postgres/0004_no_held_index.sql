-- `messages_held` (running messages by holder) is dropped. Every message accepted
-- claimed enters it and leaves it again at its end, and until the next vacuum the
-- index keeps an entry for each: the heartbeat, which looks its messages up by id,
-- was planned as a scan of all of them. Recovery reads the running messages
-- through `messages_lane`, which holds every unfinished message.
DROP INDEX IF EXISTS messages_held;
