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

/// What the message for a bad time says is expected.
const TIME_FORMS: &str = "2025-01-31 13:45:00 or a date like 2025-01-31 \
                          (a real day, hours 00-23, minutes and seconds 00-59)";

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
                message: format!(
                    "transaction_date \"yesterday\" is not a valid time like {TIME_FORMS}; \
                     duplicate transaction_id 1 (already earlier in the file)"
                )
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

/// A users file: the header, then `rows` good users numbered from 10, with `bad` put in as
/// line 2.
fn users_after(bad: &str, rows: u64) -> String {
    let mut text = String::from("user_id,name,email,city_tier,created_at\n");
    text.push_str(bad);
    text.push('\n');
    for i in 0..rows {
        text.push_str(&format!(
            "{},User {i},u{i}@example.com,1,2025-01-01 00:00:00\n",
            10 + i
        ));
    }
    text
}

#[test]
fn a_quote_left_open_refuses_the_file_naming_its_line_even_when_skipping() {
    let (_dir, mut conn) = setup();
    let text = users_after("2,\"Ben Li,ben@example.com,1,2025-01-01 00:00:00", 200_000);
    for skip in [false, true] {
        let err = import(&mut conn, ImportTable::Users, &text, skip).unwrap_err();
        let Error::Import(errors) = &err else {
            panic!("expected an import error, got {err:?}");
        };
        assert_eq!(
            errors.errors,
            vec![RowError {
                line: 2,
                message: "a quoted value opens on this line and is never closed: \
                          the 200000 lines after it were read as part of this row"
                    .into()
            }],
            "skip {skip}"
        );
        assert_eq!((errors.total, errors.quote_line), (1, Some(2)));
        assert!(
            err.to_string().starts_with(
                "1 bad row in the users file, nothing imported (the quoted value on line 2 \
                 may hide rows, so bad rows cannot be skipped); line 2: a quoted value opens"
            ),
            "{err}"
        );
        assert_eq!(count(&conn, "users"), 0, "skip {skip}");
    }

    // Good rows before the quote are not kept either, and a quote opening on the last line
    // (with no final newline) is caught too.
    let text = "user_id,name,email,city_tier,created_at\n\
                1,Asha,asha@example.com,1,\n\
                2,Ben,ben@example.com,\"1,";
    let Err(Error::Import(errors)) = import(&mut conn, ImportTable::Users, text, true) else {
        panic!("expected an import error");
    };
    assert_eq!(
        errors.errors,
        vec![RowError {
            line: 3,
            message: "a quoted value opens on this line and is never closed".into()
        }]
    );
    assert_eq!(count(&conn, "users"), 0);
}

#[test]
fn a_bad_row_running_over_lines_refuses_the_file_even_when_skipping() {
    let (_dir, mut conn) = setup();
    // The quote opened on line 2 is closed by the first quote of line 5: lines 3 and 4 are
    // swallowed into one bad row.
    let text = "user_id,name,email,city_tier,created_at\n\
                2,\"Ben Li,ben@example.com,1,\n\
                3,Cy,cy@example.com,1,\n\
                4,Dev,dev@example.com,1,\n\
                5,\"Eve, E\",eve@example.com,1,\n\
                6,Fay,fay@example.com,1,\n";
    for skip in [false, true] {
        let Err(Error::Import(errors)) = import(&mut conn, ImportTable::Users, text, skip) else {
            panic!("expected an import error");
        };
        assert_eq!(errors.quote_line, Some(2));
        assert_eq!(
            errors.errors,
            vec![RowError {
                line: 2,
                message: "expected 5 fields, found 6; a quoted value in this row runs on to \
                          line 5: is a closing quote missing?"
                    .into()
            }]
        );
        assert_eq!(count(&conn, "users"), 0, "skip {skip}");
    }

    // A good value over several lines is still a good row, at the end of the file too.
    let text = "user_id,name,email,city_tier,created_at\n\
                1,\"Two\nLines\",a@example.com,1,\n\
                2,B,b@example.com,1,\"2025-01-01\"\n\
                3,\"Ends\n\",c@example.com,1,2025-01-01 00:00:00\n\
                4,D,d@example.com,1,\"2025-01-01 00:00:00\"";
    let report = import(&mut conn, ImportTable::Users, text, false).unwrap();
    assert_eq!((report.imported, report.skipped), (4, 0));

    // Escaped quotes, a quote inside an unquoted value and CRLF line ends close nothing.
    let text = "user_id,name,email,city_tier,created_at\r\n\
                5,\"say \"\"hi\"\"\",e@example.com,1,\r\n\
                6,6\" screen,f@example.com,1,";
    let report = import(&mut conn, ImportTable::Users, text, false).unwrap();
    assert_eq!((report.imported, report.skipped), (2, 0));
    let name: String = conn
        .query_row("SELECT name FROM users WHERE user_id = 6", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "6\" screen");
}

#[test]
fn a_header_quote_left_open_is_named() {
    let (_dir, mut conn) = setup();
    let err = import(
        &mut conn,
        ImportTable::Users,
        &users_after("1,A,a@example.com,1,", 3).replacen("name", "\"name", 1),
        true,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "header: a quoted column name runs over several lines: is a closing quote missing on \
         line 1?; expected user_id,name,email,city_tier,created_at"
    );
}

#[test]
fn impossible_times_are_bad_rows_and_dates_are_midnight() {
    let (_dir, mut conn) = setup();
    let users = "user_id,name,email,city_tier,created_at\n\
                 1,Leap,l@example.com,1,2025-02-01 00:00:60\n\
                 2,Feb,f@example.com,1,2025-02-30 10:00:00\n\
                 3,Day,d@example.com,1,2026-11-30\n\
                 4,Iso,i@example.com,1,2025-02-01T23:59:59Z\n\
                 5,Big,b@example.com,1,+12025-01-01 00:00:00\n";
    let Err(Error::Import(errors)) = import(&mut conn, ImportTable::Users, users, false) else {
        panic!("expected an import error");
    };
    let bad = |line, column: &str, raw: &str| RowError {
        line,
        message: format!("{column} {raw:?} is not a valid time like {TIME_FORMS}"),
    };
    assert_eq!(
        errors.errors,
        vec![
            bad(2, "created_at", "2025-02-01 00:00:60"),
            bad(3, "created_at", "2025-02-30 10:00:00"),
            bad(6, "created_at", "+12025-01-01 00:00:00"),
        ]
    );
    let report = import(&mut conn, ImportTable::Users, users, true).unwrap();
    assert_eq!((report.imported, report.skipped), (2, 3));

    let card = "transaction_id,user_id,amount,merchant,category,transaction_date\n\
                1,3,10,Cafe,Dining,2026-11-30\n\
                2,3,10,Cafe,Dining,2026-11-30 24:00:00\n";
    let report = import(&mut conn, ImportTable::CreditCard, card, true).unwrap();
    assert_eq!(
        report.errors,
        vec![bad(3, "transaction_date", "2026-11-30 24:00:00")]
    );

    // Stored in the one form, which SQLite's date functions read.
    let times: Vec<(String, Option<f64>)> = conn
        .prepare(
            "SELECT created_at, julianday(created_at) FROM users UNION ALL \
             SELECT transaction_date, julianday(transaction_date) FROM credit_card_transactions",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        times.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        [
            "2026-11-30 00:00:00",
            "2025-02-01 23:59:59",
            "2026-11-30 00:00:00"
        ]
    );
    assert!(times.iter().all(|(_, day)| day.is_some()), "{times:?}");
}
