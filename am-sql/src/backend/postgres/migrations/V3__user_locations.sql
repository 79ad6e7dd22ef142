-- Users' locations, optional and at most one per user, kept apart from `users` so ETL's
-- positional inserts into `users` keep working. `location within_km` reads them: the latitude
-- index serves the latitude band that narrows a circle's candidates before the exact test.
CREATE TABLE user_locations (
    user_id BIGINT PRIMARY KEY REFERENCES users(user_id),
    latitude DOUBLE PRECISION NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude DOUBLE PRECISION NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    updated_at TIMESTAMP
);
CREATE INDEX user_locations_latitude ON user_locations(latitude, longitude) INCLUDE (user_id);

-- Counted for freshness and logged per user like every data table (V2__change_log.sql).
CREATE TRIGGER user_locations_data_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_locations
    FOR EACH STATEMENT EXECUTE FUNCTION am_bump_data_version();
CREATE TRIGGER user_locations_data_version_log_insert AFTER INSERT ON user_locations
    REFERENCING NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER user_locations_data_version_log_update AFTER UPDATE ON user_locations
    REFERENCING OLD TABLE AS am_old_rows NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER user_locations_data_version_log_delete AFTER DELETE ON user_locations
    REFERENCING OLD TABLE AS am_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
