-- Change capture per user: every write to the data tables records, besides bumping
-- `data_version`, which users it touched (old and new `user_id` of a changed row) at which
-- version, so a refresh re-evaluates only those users. `changes_from` is where the log starts:
-- it holds every change after that version (a bulk load of our own or a pruned log moves it).
CREATE TABLE data_changes (
    version INTEGER NOT NULL,
    user_id INTEGER NOT NULL
);
CREATE INDEX data_changes_by_version ON data_changes(version, user_id);
ALTER TABLE data_version ADD COLUMN changes_from INTEGER NOT NULL DEFAULT 0;
UPDATE data_version SET changes_from = version;

-- Users whose transactions enter or leave a relative window as the as-of time moves are found
-- by day. On the day, not the time: a window's scan compares the time, so it keeps using the
-- covering (user_id, transaction_date, amount) index instead of looking rows up from this one.
CREATE INDEX credit_card_transactions_day_user
    ON credit_card_transactions(date(transaction_date), user_id);
CREATE INDEX upi_transactions_day_user ON upi_transactions(date(transaction_date), user_id);

DROP TRIGGER IF EXISTS users_data_version_insert;
CREATE TRIGGER users_data_version_insert AFTER INSERT ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL; END;
DROP TRIGGER IF EXISTS users_data_version_update;
CREATE TRIGGER users_data_version_update AFTER UPDATE ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id; END;
DROP TRIGGER IF EXISTS users_data_version_delete;
CREATE TRIGGER users_data_version_delete AFTER DELETE ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL; END;
DROP TRIGGER IF EXISTS credit_card_transactions_data_version_insert;
CREATE TRIGGER credit_card_transactions_data_version_insert AFTER INSERT ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL; END;
DROP TRIGGER IF EXISTS credit_card_transactions_data_version_update;
CREATE TRIGGER credit_card_transactions_data_version_update AFTER UPDATE ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id; END;
DROP TRIGGER IF EXISTS credit_card_transactions_data_version_delete;
CREATE TRIGGER credit_card_transactions_data_version_delete AFTER DELETE ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL; END;
DROP TRIGGER IF EXISTS upi_transactions_data_version_insert;
CREATE TRIGGER upi_transactions_data_version_insert AFTER INSERT ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL; END;
DROP TRIGGER IF EXISTS upi_transactions_data_version_update;
CREATE TRIGGER upi_transactions_data_version_update AFTER UPDATE ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL;
INSERT INTO data_changes (version, user_id) SELECT version, NEW.user_id FROM data_version WHERE id = 1 AND NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id; END;
DROP TRIGGER IF EXISTS upi_transactions_data_version_delete;
CREATE TRIGGER upi_transactions_data_version_delete AFTER DELETE ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;
INSERT INTO data_changes (version, user_id) SELECT version, OLD.user_id FROM data_version WHERE id = 1 AND OLD.user_id IS NOT NULL; END;
