//! CSV import: header checks, row validation with line numbers, all-or-nothing by default and
//! skipping bad rows when asked.

use am_sql::conn::{Cell, Conn};
use am_sql::error::Error;
use am_sql::import::{ImportOptions, ImportTable, RowError, import_csv};
use am_sql::progress::NoProgress;
use am_sql::tracking::data_version;
use sea_query::{Expr, ExprTrait, Query};

use crate::engines::{Engine, rows_of, time_text};

fn import(
    conn: &mut dyn Conn,
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

const USERS: &str = "\
user_id,name,email,city_tier,created_at
1,Asha Rao,asha@example.com,1,2025-01-01 00:00:00
2,Ben Li,,2,2025-01-02T08:30:00Z
3,\"Das, Cy\",cy@example.com,,
";

conformance! {
    fn line_numbers_count_quoted_newlines_and_blank_lines(db: &mut TestDb) {
        let text = "user_id,name,email,city_tier,created_at\n1,\"Two\nLines\",a@example.com,1,\n\n\n2,B,b@example.com,x,";
        let Err(Error::Import(errors)) = import(db.conn(), ImportTable::Users, text, false) else {
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
}

conformance! {
    fn a_good_file_is_imported_with_values_normalised(db: &mut TestDb) {
        let before = data_version(db.conn()).unwrap();
        let report = import(db.conn(), ImportTable::Users, USERS, false).unwrap();
        assert_eq!((report.imported, report.skipped), (3, 0));
        assert!(report.errors.is_empty());
        assert_eq!(
            data_version(db.conn()).unwrap(),
            before + 1,
            "one bump per file"
        );

        let q = Query::select()
            .columns(["email", "city_tier", "created_at"])
            .from("users")
            .and_where(Expr::col("user_id").eq(2))
            .to_owned();
        let row = db.conn().row(&q).unwrap();
        let ben = (
            row.opt_text(0).unwrap(),
            row.opt_i64(1).unwrap(),
            time_text(&row, 2),
        );
        assert_eq!(ben, (None, Some(2), Some("2025-01-02 08:30:00".into())));

        // Columns in another order, amounts as written by hand.
        let card = "\
category,amount,user_id,transaction_id,merchant,transaction_date
Travel,999.70,1,10,IndiGo,2025-03-01 10:00:00
Travel,0.1,1,11,Uber,2025-03-02 10:00:00
";
        let report = import(db.conn(), ImportTable::CreditCard, card, false).unwrap();
        assert_eq!(report.imported, 2);
        let cents = Query::select()
            .expr(Expr::cust("CAST(round(amount * 100) AS BIGINT)"))
            .from("credit_card_transactions")
            .order_by("transaction_id", sea_query::Order::Asc)
            .to_owned();
        let cents: Vec<i64> = db
            .conn()
            .rows(&cents)
            .unwrap()
            .iter()
            .map(|r| r.i64(0).unwrap())
            .collect();
        assert_eq!(cents, [99_970, 10]);
        if db.engine == Engine::Sqlite {
            // Numbers, not the text of the file.
            let amounts: Vec<Cell> =
                rows_of(db.conn(), "credit_card_transactions", "transaction_id")
                    .into_iter()
                    .map(|r| r.0[2].clone())
                    .collect();
            assert_eq!(amounts, [Cell::Real(999.7), Cell::Real(0.1)]);
        }
        // Change tracking is back in place after the import.
        let v = data_version(db.conn()).unwrap();
        let delete = Query::delete()
            .from_table("credit_card_transactions")
            .and_where(Expr::col("transaction_id").eq(11))
            .to_owned();
        assert_eq!(db.exec(&delete), 1);
        assert!(data_version(db.conn()).unwrap() > v);
    }
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

conformance! {
    fn a_file_with_bad_rows_imports_nothing_and_names_every_line(db: &mut TestDb) {
        import(db.conn(), ImportTable::Users, USERS, false).unwrap();
        let before = data_version(db.conn()).unwrap();
        let err = import(db.conn(), ImportTable::Upi, BAD_UPI, false).unwrap_err();
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
                    message: "amount \"12.345\" is not a number with at most 2 decimal places"
                        .into()
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
        assert!(err.to_string().starts_with(
            "5 bad rows in the upi_transactions file, nothing imported; line 3: amount"
        ));
        assert_eq!(db.count("upi_transactions"), 0);
        assert_eq!(data_version(db.conn()).unwrap(), before);
        if db.engine == Engine::Sqlite {
            let triggers = db.one(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'upi_transactions'",
            );
            assert_eq!(triggers, 3, "the rollback restores the triggers");
        }
    }
}

conformance! {
    fn skipping_bad_rows_imports_the_good_ones_and_counts_the_rest(db: &mut TestDb) {
        import(db.conn(), ImportTable::Users, USERS, false).unwrap();
        let report = import(db.conn(), ImportTable::Upi, BAD_UPI, true).unwrap();
        assert_eq!((report.imported, report.skipped), (2, 5));
        assert_eq!(
            report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [3, 4, 6, 7, 9]
        );
        let ids: Vec<i64> = rows_of(db.conn(), "upi_transactions", "transaction_id")
            .iter()
            .map(|r| r.i64(0).unwrap())
            .collect();
        assert_eq!(ids, [1, 5]);
    }
}

conformance! {
    fn duplicate_keys_in_the_file_or_the_table_are_bad_rows(db: &mut TestDb) {
        import(db.conn(), ImportTable::Users, USERS, false).unwrap();
        let more = "\
user_id,name,email,city_tier,created_at
4,Dev,dev@example.com,3,2025-01-01 00:00:00
4,Dev again,dev@example.com,3,2025-01-01 00:00:00
2,Ben twice,ben@example.com,two,2025-01-01 00:00:00
";
        let err = import(db.conn(), ImportTable::Users, more, false).unwrap_err();
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
                    message:
                        "city_tier \"two\" is not an integer; user_id 2 already exists in users"
                            .into()
                },
            ]
        );
        assert_eq!(db.count("users"), 3);
    }
}

conformance! {
    fn headers_must_name_exactly_the_tables_columns(db: &mut TestDb) {
        let mut header = |table, text: &str, skip| {
            let err = import(db.conn(), table, text, skip).unwrap_err();
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
        assert_eq!(db.count("users"), 0);
    }
}

conformance! {
    fn the_report_caps_the_listed_rows(db: &mut TestDb) {
        let mut text = String::from("user_id,name,email,city_tier,created_at\n");
        for i in 0..150 {
            text.push_str(&format!("{i},N,n@example.com,bad,\n"));
        }
        let Err(Error::Import(errors)) = import(db.conn(), ImportTable::Users, &text, false) else {
            panic!("expected an import error");
        };
        assert_eq!(errors.total, 150);
        assert_eq!(errors.errors.len(), am_sql::import::MAX_REPORTED);
        assert_eq!(errors.errors[0].line, 2);
        assert!(errors.to_string().ends_with("; and 50 more"));
    }
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

conformance! {
    fn a_quote_left_open_refuses_the_file_naming_its_line_even_when_skipping(db: &mut TestDb) {
        let text = users_after("2,\"Ben Li,ben@example.com,1,2025-01-01 00:00:00", 200_000);
        for skip in [false, true] {
            let err = import(db.conn(), ImportTable::Users, &text, skip).unwrap_err();
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
            assert_eq!(db.count("users"), 0, "skip {skip}");
        }

        // Good rows before the quote are not kept either, and a quote opening on the last line
        // (with no final newline) is caught too.
        let text = "user_id,name,email,city_tier,created_at\n\
                1,Asha,asha@example.com,1,\n\
                2,Ben,ben@example.com,\"1,";
        let Err(Error::Import(errors)) = import(db.conn(), ImportTable::Users, text, true) else {
            panic!("expected an import error");
        };
        assert_eq!(
            errors.errors,
            vec![RowError {
                line: 3,
                message: "a quoted value opens on this line and is never closed".into()
            }]
        );
        assert_eq!(db.count("users"), 0);
    }
}

conformance! {
    fn a_bad_row_running_over_lines_refuses_the_file_even_when_skipping(db: &mut TestDb) {
        // The quote opened on line 2 is closed by the first quote of line 5: lines 3 and 4 are
        // swallowed into one bad row.
        let text = "user_id,name,email,city_tier,created_at\n\
                2,\"Ben Li,ben@example.com,1,\n\
                3,Cy,cy@example.com,1,\n\
                4,Dev,dev@example.com,1,\n\
                5,\"Eve, E\",eve@example.com,1,\n\
                6,Fay,fay@example.com,1,\n";
        for skip in [false, true] {
            let Err(Error::Import(errors)) = import(db.conn(), ImportTable::Users, text, skip)
            else {
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
            assert_eq!(db.count("users"), 0, "skip {skip}");
        }

        // A good value over several lines is still a good row, at the end of the file too.
        let text = "user_id,name,email,city_tier,created_at\n\
                1,\"Two\nLines\",a@example.com,1,\n\
                2,B,b@example.com,1,\"2025-01-01\"\n\
                3,\"Ends\n\",c@example.com,1,2025-01-01 00:00:00\n\
                4,D,d@example.com,1,\"2025-01-01 00:00:00\"";
        let report = import(db.conn(), ImportTable::Users, text, false).unwrap();
        assert_eq!((report.imported, report.skipped), (4, 0));

        // Escaped quotes, a quote inside an unquoted value and CRLF line ends close nothing.
        let text = "user_id,name,email,city_tier,created_at\r\n\
                5,\"say \"\"hi\"\"\",e@example.com,1,\r\n\
                6,6\" screen,f@example.com,1,";
        let report = import(db.conn(), ImportTable::Users, text, false).unwrap();
        assert_eq!((report.imported, report.skipped), (2, 0));
        let q = Query::select()
            .column("name")
            .from("users")
            .and_where(Expr::col("user_id").eq(6))
            .to_owned();
        let name = db.conn().row(&q).unwrap().text(0).unwrap();
        assert_eq!(name, "6\" screen");
    }
}

conformance! {
    fn a_header_quote_left_open_is_named(db: &mut TestDb) {
        let err = import(
            db.conn(),
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
}

conformance! {
    fn impossible_times_are_bad_rows_and_dates_are_midnight(db: &mut TestDb) {
        let users = "user_id,name,email,city_tier,created_at\n\
                 1,Leap,l@example.com,1,2025-02-01 00:00:60\n\
                 2,Feb,f@example.com,1,2025-02-30 10:00:00\n\
                 3,Day,d@example.com,1,2026-11-30\n\
                 4,Iso,i@example.com,1,2025-02-01T23:59:59Z\n\
                 5,Big,b@example.com,1,+12025-01-01 00:00:00\n";
        let Err(Error::Import(errors)) = import(db.conn(), ImportTable::Users, users, false) else {
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
        let report = import(db.conn(), ImportTable::Users, users, true).unwrap();
        assert_eq!((report.imported, report.skipped), (2, 3));

        let card = "transaction_id,user_id,amount,merchant,category,transaction_date\n\
                1,3,10,Cafe,Dining,2026-11-30\n\
                2,3,10,Cafe,Dining,2026-11-30 24:00:00\n";
        let report = import(db.conn(), ImportTable::CreditCard, card, true).unwrap();
        assert_eq!(
            report.errors,
            vec![bad(3, "transaction_date", "2026-11-30 24:00:00")]
        );

        // Stored in the one form.
        let mut times: Vec<Option<String>> = rows_of(db.conn(), "users", "user_id")
            .iter()
            .map(|r| time_text(r, 4))
            .collect();
        times.extend(
            rows_of(db.conn(), "credit_card_transactions", "transaction_id")
                .iter()
                .map(|r| time_text(r, 5)),
        );
        assert_eq!(
            times,
            [
                Some("2026-11-30 00:00:00".to_owned()),
                Some("2025-02-01 23:59:59".to_owned()),
                Some("2026-11-30 00:00:00".to_owned())
            ]
        );
        if db.engine == Engine::Sqlite {
            // Text SQLite's date functions read.
            assert_eq!(
                db.one(
                    "SELECT count(*) FROM (SELECT created_at AS t FROM users UNION ALL \
                     SELECT transaction_date FROM credit_card_transactions) AS times \
                     WHERE julianday(t) IS NULL"
                ),
                0
            );
        }
    }
}

conformance! {
    fn locations_are_imported_in_range_for_existing_users(db: &mut TestDb) {
        import(db.conn(), ImportTable::Users, USERS, false).unwrap();
        let bad = "\
user_id,latitude,longitude,updated_at
1,12.9716,77.5946,2025-03-01 10:00:00
2,91,77.5,
9,12,77,
1,12,77,
3,-12.5,east,
";
        let err = import(db.conn(), ImportTable::Locations, bad, false).unwrap_err();
        let Error::Import(errors) = &err else {
            panic!("expected an import error, got {err:?}");
        };
        assert_eq!(errors.table, "user_locations");
        let lines: Vec<(u64, &str)> = errors
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (3, "latitude \"91\" is not a number from -90 to 90"),
                (4, "user_id 9 does not exist in users"),
                (5, "duplicate user_id 1 (already earlier in the file)"),
                (6, "longitude \"east\" is not a number from -180 to 180"),
            ]
        );
        assert_eq!(db.count("user_locations"), 0, "nothing imported");

        let before = data_version(db.conn()).unwrap();
        let good = "user_id,longitude,latitude,updated_at\n1,77.5946,12.9716,2025-03-01T10:00:00Z\n3,-180,-90,\n";
        let report = import(db.conn(), ImportTable::Locations, good, false).unwrap();
        assert_eq!(report.imported, 2);
        assert!(data_version(db.conn()).unwrap() > before);
        let rows = rows_of(db.conn(), "user_locations", "user_id");
        assert_eq!(rows[0].0[1], Cell::Real(12.9716));
        assert_eq!(rows[0].0[2], Cell::Real(77.5946));
        assert_eq!(time_text(&rows[0], 3).as_deref(), Some("2025-03-01 10:00:00"));
        assert_eq!(rows[1].0[1..3], [Cell::Real(-90.0), Cell::Real(-180.0)]);
        // A second row for a user is refused: one location each.
        let again = import(db.conn(), ImportTable::Locations, good, false).unwrap_err();
        assert!(again.to_string().contains("user_id 1 already exists in user_locations"), "{again}");
    }
}
