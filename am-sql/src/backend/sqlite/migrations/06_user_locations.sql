-- Users' locations, optional and at most one per user, kept apart from `users` so ETL's
-- positional inserts into `users` keep working. `location within_km` reads them: the latitude
-- index serves the latitude band that narrows a circle's candidates before the exact test.
CREATE TABLE user_locations (
    user_id INTEGER PRIMARY KEY REFERENCES users(user_id),
    latitude REAL NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude REAL NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    updated_at TEXT
);
CREATE INDEX user_locations_latitude ON user_locations(latitude, longitude);

-- Counted for freshness and logged per user like every data table (05_change_log.sql).
CREATE TRIGGER user_locations_data_version_insert AFTER INSERT ON user_locations
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL; END;
CREATE TRIGGER user_locations_data_version_update AFTER UPDATE ON user_locations
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id; END;
CREATE TRIGGER user_locations_data_version_delete AFTER DELETE ON user_locations
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL; END;
