-- The store's generation: one more each time the file is opened, i.e. at each
-- start of flowgate. Ordered flows read it as `.meta.lane_epoch`: on a single
-- node a lane changes hands only when flowgate restarts, and everything that
-- ran before ran under a lower value.
CREATE TABLE generation (value INTEGER NOT NULL);
INSERT INTO generation (value) VALUES (0);
