-- `category` joins the covering index of the aggregate scans: a scope filtered on a category
-- (`where`, the seed's flat list) or counting distinct categories then reads the index alone,
-- instead of looking up every row of its window in the table (docs/operations.md, "Indexes").
DROP INDEX credit_card_transactions_user_date_amount;
DROP INDEX upi_transactions_user_date_amount;
CREATE INDEX credit_card_transactions_user_date_amount_category
    ON credit_card_transactions(user_id, transaction_date, amount, category);
CREATE INDEX upi_transactions_user_date_amount_category
    ON upi_transactions(user_id, transaction_date, amount, category);
