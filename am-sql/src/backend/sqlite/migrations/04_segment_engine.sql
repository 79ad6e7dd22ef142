-- Which engine computed each segment's members (`sqlite`, `postgresql`, `spark`); segments
-- built before engines were recorded were built by SQLite.
ALTER TABLE segment_catalog ADD COLUMN engine TEXT NOT NULL DEFAULT 'sqlite';
