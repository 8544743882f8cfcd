-- `messages_trigger` (tenant, trigger, id) is dropped. A trigger's log history
-- without a status filter is read as one backward scan of
-- `messages_trigger_status` per status, merged (there are seven), so the index
-- was only a shortcut; and every message wrote an entry into it twice, at its
-- insert and again at its attempt's end (a status change is never a HOT update).
-- Timed in PostgreSQL alone, 20-row batches: insert plus end 37-40 -> 33 µs a message.
DROP INDEX IF EXISTS messages_trigger;
