-- Change capture per user: every statement that writes the data tables records, besides
-- bumping `data_version`, which users it touched (old and new `user_id` of its rows, from the
-- statement's transition tables) at which version, so a refresh re-evaluates only those
-- users. `changes_from` is where the log starts: it holds every change after that version (a
-- bulk load of our own, a TRUNCATE or a pruned log moves it).
CREATE TABLE data_changes (
    version BIGINT NOT NULL,
    user_id BIGINT NOT NULL
);
CREATE INDEX data_changes_by_version ON data_changes(version, user_id);
ALTER TABLE data_version ADD COLUMN changes_from BIGINT NOT NULL DEFAULT 0;
UPDATE data_version SET changes_from = version;

-- Users whose transactions enter or leave a relative window as the as-of time moves are found
-- by day (on the day, as on SQLite, so window scans keep their own plans).
CREATE INDEX credit_card_transactions_day_user
    ON credit_card_transactions((CAST(transaction_date AS DATE)), user_id);
CREATE INDEX upi_transactions_day_user ON upi_transactions((CAST(transaction_date AS DATE)), user_id);

-- A TRUNCATE removes rows nobody can list: the log starts again after it.
CREATE OR REPLACE FUNCTION am_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('am.bulk_load', true), '') <> 'on' THEN
        UPDATE data_version SET version = version + 1 WHERE id = 1;
        IF TG_OP = 'TRUNCATE' THEN
            UPDATE data_version SET changes_from = version WHERE id = 1;
            DELETE FROM data_changes;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Runs after the bump (triggers on one event fire in name order), so it logs the new version.
CREATE FUNCTION am_log_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('am.bulk_load', true), '') <> 'on' THEN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO data_changes (version, user_id)
            SELECT DISTINCT v.version, n.user_id FROM am_new_rows n, data_version v
            WHERE v.id = 1 AND n.user_id IS NOT NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO data_changes (version, user_id)
            SELECT DISTINCT v.version, o.user_id FROM am_old_rows o, data_version v
            WHERE v.id = 1 AND o.user_id IS NOT NULL;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_data_version_log_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER users_data_version_log_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS am_old_rows NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER users_data_version_log_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS am_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER credit_card_transactions_data_version_log_insert
    AFTER INSERT ON credit_card_transactions
    REFERENCING NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER credit_card_transactions_data_version_log_update
    AFTER UPDATE ON credit_card_transactions
    REFERENCING OLD TABLE AS am_old_rows NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER credit_card_transactions_data_version_log_delete
    AFTER DELETE ON credit_card_transactions
    REFERENCING OLD TABLE AS am_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER upi_transactions_data_version_log_insert AFTER INSERT ON upi_transactions
    REFERENCING NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER upi_transactions_data_version_log_update AFTER UPDATE ON upi_transactions
    REFERENCING OLD TABLE AS am_old_rows NEW TABLE AS am_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
CREATE TRIGGER upi_transactions_data_version_log_delete AFTER DELETE ON upi_transactions
    REFERENCING OLD TABLE AS am_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();
