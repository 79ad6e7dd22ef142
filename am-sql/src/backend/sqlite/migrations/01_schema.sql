-- Audience Manager schema, version 1.
--
-- The three data tables and rule_table / segment_catalog keep the names and columns of the
-- contract (section 1); the extra columns and tables are what the platform needs for
-- freshness and run history.

PRAGMA application_id = 1095583537;

CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    name TEXT,
    email TEXT,
    city_tier INTEGER,
    created_at TEXT
);

CREATE TABLE credit_card_transactions (
    transaction_id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(user_id),
    amount NUMERIC,
    merchant TEXT,
    category TEXT,
    transaction_date TEXT
);

CREATE TABLE upi_transactions (
    transaction_id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(user_id),
    amount NUMERIC,
    description TEXT,
    category TEXT,
    transaction_date TEXT
);

CREATE TABLE rule_table (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_name TEXT NOT NULL UNIQUE,
    description TEXT,
    -- the user's JSON text, exactly as written
    conditions TEXT,
    schedule TEXT,
    start_date TEXT,
    end_date TEXT,
    depends_on TEXT NOT NULL DEFAULT '[]',
    operation TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- bumped on every update; a segment built from an older version is stale
    version INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE segment_catalog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id INTEGER NOT NULL UNIQUE REFERENCES rule_table(id) ON DELETE CASCADE,
    segment_name TEXT NOT NULL,
    description TEXT,
    table_name TEXT NOT NULL,
    row_count INTEGER NOT NULL DEFAULT 0,
    sql_query TEXT NOT NULL,
    last_refreshed_at TEXT NOT NULL,
    rule_version INTEGER NOT NULL,
    data_version INTEGER NOT NULL,
    as_of TEXT NOT NULL,
    entered INTEGER NOT NULL DEFAULT 0,
    left_count INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    reused_from TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE refresh_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id INTEGER REFERENCES rule_table(id) ON DELETE SET NULL,
    rule_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    "trigger" TEXT NOT NULL CHECK ("trigger" IN ('manual', 'schedule', 'cli', 'api', 'upstream')),
    queued_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    row_count INTEGER,
    entered INTEGER,
    left_count INTEGER,
    error TEXT,
    as_of TEXT
);

CREATE INDEX refresh_runs_by_rule ON refresh_runs(rule_id, id);
CREATE INDEX refresh_runs_active ON refresh_runs(status) WHERE status IN ('queued', 'running');

-- A counter bumped by every write to the data tables, however it was made (our import, or
-- users' own ETL with plain SQL): a segment built at an older data version is stale.
CREATE TABLE data_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO data_version (id, version) VALUES (1, 0);

CREATE TRIGGER users_data_version_insert AFTER INSERT ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_data_version_update AFTER UPDATE ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_data_version_delete AFTER DELETE ON users
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER credit_card_transactions_data_version_insert AFTER INSERT ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER credit_card_transactions_data_version_update AFTER UPDATE ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER credit_card_transactions_data_version_delete AFTER DELETE ON credit_card_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER upi_transactions_data_version_insert AFTER INSERT ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER upi_transactions_data_version_update AFTER UPDATE ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER upi_transactions_data_version_delete AFTER DELETE ON upi_transactions
BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;
