-- Indexes for the per-user aggregate scans of refresh (measured: docs/operations.md).
-- Covering (user_id, transaction_date, amount) lets a windowed GROUP BY user_id read the index
-- alone, in user order, without touching the table or sorting.

CREATE INDEX credit_card_transactions_user_date_amount
    ON credit_card_transactions(user_id, transaction_date, amount);
CREATE INDEX upi_transactions_user_date_amount
    ON upi_transactions(user_id, transaction_date, amount);
