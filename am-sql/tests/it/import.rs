//! CSV import: header checks, row validation with line numbers, all-or-nothing by default and
//! skipping bad rows when asked.

use am_sql::db;
use am_sql::error::Error;
use am_sql::import::{ImportOptions, ImportTable, RowError, import_csv};
use am_sql::progress::NoProgress;
use am_sql::store::Store;
use rusqlite::Connection;
use tempfile::TempDir;

fn setup() -> (TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    let conn = store.connection().unwrap();
    (dir, conn)
}

fn import(
    conn: &mut Connection,
    table: ImportTable,
    text: &str,
    skip: bool,
) -> Result<am_sql::import::ImportReport, Error> {
    import_csv(
        conn,
        table,
        text.as_bytes(),
        ImportOptions {
            skip_bad_rows: skip,
        },
        &NoProgress,
    )
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

const USERS: &str = "\
user_id,name,email,city_tier,created_at
1,Asha Rao,asha@example.com,1,2025-01-01 00:00:00
2,Ben Li,,2,2025-01-02T08:30:00Z
3,\"Das, Cy\",cy@example.com,,
";

#[test]
fn line_numbers_count_quoted_newlines_and_blank_lines() {
    let (_dir, mut conn) = setup();
    let text = "user_id,name,email,city_tier,created_at\n1,\"Two\nLines\",a@example.com,1,\n\n\n2,B,b@example.com,x,";
    let Err(Error::Import(errors)) = import(&mut conn, ImportTable::Users, text, false) else {
        panic!("expected an import error");
    };
    assert_eq!(
        errors.errors,
        vec![RowError {
            line: 6,
            message: "city_tier \"x\" is not an integer".into()
        }]
    );
}

#[test]
fn a_good_file_is_imported_with_values_normalised() {
    let (_dir, mut conn) = setup();
    let before = db::data_version(&conn).unwrap();
    let report = import(&mut conn, ImportTable::Users, USERS, false).unwrap();
    assert_eq!((report.imported, report.skipped), (3, 0));
    assert!(report.errors.is_empty());
    assert_eq!(
        db::data_version(&conn).unwrap(),
        before + 1,
        "one bump per file"
    );

    let ben: (Option<String>, Option<i64>, Option<String>) = conn
        .query_row(
            "SELECT email, city_tier, created_at FROM users WHERE user_id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(ben, (None, Some(2), Some("2025-01-02 08:30:00".into())));

    // Columns in another order, amounts as written by hand.
    let card = "\
category,amount,user_id,transaction_id,merchant,transaction_date
Travel,999.70,1,10,IndiGo,2025-03-01 10:00:00
Travel,0.1,1,11,Uber,2025-03-02 10:00:00
";
    let report = import(&mut conn, ImportTable::CreditCard, card, false).unwrap();
    assert_eq!(report.imported, 2);
    let amounts: Vec<f64> = conn
        .prepare("SELECT amount FROM credit_card_transactions ORDER BY transaction_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(amounts, [999.7, 0.1]);
    // The data-version triggers are back in place after the import.
    let v = db::data_version(&conn).unwrap();
    conn.execute(
        "DELETE FROM credit_card_transactions WHERE transaction_id = 11",
        [],
    )
    .unwrap();
    assert!(db::data_version(&conn).unwrap() > v);
}

const BAD_UPI: &str = "\
transaction_id,user_id,amount,description,category,transaction_date
1,1,12.5,Cab ride,Travel,2025-03-01 10:00:00
2,1,12.345,Cab ride,Travel,2025-03-01 10:00:00
3,99,10,Cab ride,Travel,2025-03-01 10:00:00

1,2,10,Tea,Dining,yesterday
x,2,10,Tea,Dining,2025-03-01 10:00:00
5,2,10,Tea,Dining,2025-03-01 10:00:00
6,2
";

#[test]
fn a_file_with_bad_rows_imports_nothing_and_names_every_line() {
    let (_dir, mut conn) = setup();
    import(&mut conn, ImportTable::Users, USERS, false).unwrap();
    let before = db::data_version(&conn).unwrap();
    let err = import(&mut conn, ImportTable::Upi, BAD_UPI, false).unwrap_err();
    let Error::Import(errors) = &err else {
        panic!("expected an import error, got {err:?}");
    };
    assert_eq!(errors.table, "upi_transactions");
    assert_eq!(errors.total, 5);
    assert_eq!(
        errors.errors,
        vec![
            RowError {
                line: 3,
                message: "amount \"12.345\" is not a number with at most 2 decimal places".into()
            },
            RowError {
                line: 4,
                message: "user_id 99 does not exist in users".into()
            },
            RowError {
                line: 6,
                message: "transaction_date \"yesterday\" is not a time like 2025-01-31 13:45:00; \
                          duplicate transaction_id 1 (already earlier in the file)"
                    .into()
            },
            RowError {
                line: 7,
                message: "transaction_id \"x\" is not an integer".into()
            },
            RowError {
                line: 9,
                message: "expected 6 fields, found 2".into()
            },
        ]
    );
    assert!(
        err.to_string().starts_with(
            "5 bad rows in the upi_transactions file, nothing imported; line 3: amount"
        )
    );
    assert_eq!(count(&conn, "upi_transactions"), 0);
    assert_eq!(db::data_version(&conn).unwrap(), before);
    let triggers: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'upi_transactions'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 3, "the rollback restores the triggers");
}

#[test]
fn skipping_bad_rows_imports_the_good_ones_and_counts_the_rest() {
    let (_dir, mut conn) = setup();
    import(&mut conn, ImportTable::Users, USERS, false).unwrap();
    let report = import(&mut conn, ImportTable::Upi, BAD_UPI, true).unwrap();
    assert_eq!((report.imported, report.skipped), (2, 5));
    assert_eq!(
        report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        [3, 4, 6, 7, 9]
    );
    let ids: Vec<i64> = conn
        .prepare("SELECT transaction_id FROM upi_transactions ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, [1, 5]);
}

#[test]
fn duplicate_keys_in_the_file_or_the_table_are_bad_rows() {
    let (_dir, mut conn) = setup();
    import(&mut conn, ImportTable::Users, USERS, false).unwrap();
    let more = "\
user_id,name,email,city_tier,created_at
4,Dev,dev@example.com,3,2025-01-01 00:00:00
4,Dev again,dev@example.com,3,2025-01-01 00:00:00
2,Ben twice,ben@example.com,two,2025-01-01 00:00:00
";
    let err = import(&mut conn, ImportTable::Users, more, false).unwrap_err();
    let Error::Import(errors) = err else {
        panic!("expected an import error");
    };
    assert_eq!(
        errors.errors,
        vec![
            RowError {
                line: 3,
                message: "duplicate user_id 4 (already earlier in the file)".into()
            },
            RowError {
                line: 4,
                message: "city_tier \"two\" is not an integer; user_id 2 already exists in users"
                    .into()
            },
        ]
    );
    assert_eq!(count(&conn, "users"), 3);
}

#[test]
fn headers_must_name_exactly_the_tables_columns() {
    let (_dir, mut conn) = setup();
    let mut header = |table, text: &str, skip| {
        let err = import(&mut conn, table, text, skip).unwrap_err();
        assert!(matches!(err, Error::BadHeader { .. }), "{err:?}");
        err.to_string()
    };
    assert_eq!(
        header(
            ImportTable::CreditCard,
            "transaction_id,user_id,amount,shop,category,transaction_date,merchant,amount\n",
            false
        ),
        "header: unknown column shop; repeated column amount; \
         expected transaction_id,user_id,amount,merchant,category,transaction_date"
    );
    let users = "expected user_id,name,email,city_tier,created_at";
    // Skipping bad rows does not skip a bad header.
    for skip in [false, true] {
        assert_eq!(
            header(
                ImportTable::Users,
                "user_id,name,city_tier,created_at\n1,A,1,\n",
                skip
            ),
            format!("header: missing column email; {users}")
        );
    }
    assert_eq!(
        header(ImportTable::Users, "user_id,name\n", false),
        format!("header: missing columns email, city_tier, created_at; {users}")
    );
    assert_eq!(
        header(ImportTable::Users, "", true),
        format!("header: the file is empty; {users}")
    );
    assert_eq!(count(&conn, "users"), 0);
}

#[test]
fn the_report_caps_the_listed_rows() {
    let (_dir, mut conn) = setup();
    let mut text = String::from("user_id,name,email,city_tier,created_at\n");
    for i in 0..150 {
        text.push_str(&format!("{i},N,n@example.com,bad,\n"));
    }
    let Err(Error::Import(errors)) = import(&mut conn, ImportTable::Users, &text, false) else {
        panic!("expected an import error");
    };
    assert_eq!(errors.total, 150);
    assert_eq!(errors.errors.len(), am_sql::import::MAX_REPORTED);
    assert_eq!(errors.errors[0].line, 2);
    assert!(errors.to_string().ends_with("; and 50 more"));
}
