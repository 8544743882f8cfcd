-- A lane's epoch is handed to its flows as `.meta.lane_epoch`, a fencing token:
-- it must grow with every claim of the lane, across takeovers, and never go back.
-- A count kept in the lane's row went back to 0 when retention deleted an idle
-- lane and a new message created it again. Every claim (and every release of a
-- lapsed lane at start) now takes the next value of one sequence, which is above
-- every epoch given out before.
CREATE SEQUENCE IF NOT EXISTS lane_epochs;
SELECT setval('lane_epochs', COALESCE((SELECT max(epoch) FROM lanes), 0) + 1, false);
