//! Generating and importing data.

use am_sql::conn::Cell;
use chrono::NaiveDate;

use crate::{Engine, Scratch, data_dir, on_every_engine, run};

on_every_engine!(generate_then_refuse_to_overwrite_without_replace);
fn generate_then_refuse_to_overwrite_without_replace(engine: Engine) {
    let s = Scratch::on(engine);
    let first = run(s.am().args([
        "generate",
        "--users",
        "200",
        "--transactions",
        "2000",
        "--end",
        "2025-06-30",
    ]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = run(s
        .am()
        .args(["generate", "--users", "200", "--transactions", "2000"]));
    assert_eq!(again.code, 1);
    let replaced = run(s.am().args([
        "--json",
        "generate",
        "--users",
        "100",
        "--transactions",
        "500",
        "--end",
        "2025-06-30",
        "--replace",
    ]));
    assert_eq!(replaced.code, 0, "{}", replaced.stderr);
    let v: serde_json::Value = serde_json::from_str(&replaced.stdout).expect("json");
    assert_eq!(v["users"], 100);
    assert_eq!(
        v["credit_card_transactions"].as_u64().unwrap_or(0)
            + v["upi_transactions"].as_u64().unwrap_or(0),
        500
    );
    insta::assert_snapshot!(s.neutral(format!("{}{}", first.snapshot(), again.snapshot())));
}

on_every_engine!(import_is_all_or_nothing_unless_asked);
fn import_is_all_or_nothing_unless_asked(engine: Engine) {
    let s = Scratch::on(engine);
    let users = run(s
        .am()
        .args(["import", "users"])
        .arg(data_dir().join("users.csv")));
    assert_eq!(users.code, 0, "{}", users.stderr);
    let upi = run(s
        .am()
        .args(["import", "upi"])
        .arg(data_dir().join("upi.csv")));
    assert_eq!(upi.code, 0, "{}", upi.stderr);
    let bad = run(s
        .am_in(data_dir())
        .args(["import", "users", "users_bad.csv"]));
    assert_eq!(bad.code, 1);
    let skipped =
        run(s
            .am_in(data_dir())
            .args(["import", "users", "users_bad.csv", "--skip-bad-rows"]));
    assert_eq!(skipped.code, 0, "{}", skipped.stderr);
    let missing = run(s.am().args(["import", "credit-card", "nope.csv"]));
    assert_eq!(missing.code, 1);
    insta::assert_snapshot!(
        s.neutral(
            [&users, &upi, &bad, &skipped, &missing]
                .iter()
                .map(|o| o.snapshot())
                .collect::<String>()
        )
    );
    assert_eq!(
        s.count("users"),
        4,
        "three users, then only the good row of the bad file"
    );
}

on_every_engine!(generate_options_out_of_range_are_one_line_errors);
fn generate_options_out_of_range_are_one_line_errors(engine: Engine) {
    let s = Scratch::on(engine);
    let mut out = String::new();
    for args in [
        vec![
            "--users",
            "10",
            "--transactions",
            "10",
            "--days",
            "99999999",
        ],
        vec![
            "--users",
            "10",
            "--transactions",
            "10",
            "--end",
            "0001-01-01",
            "--days",
            "36500",
        ],
        vec!["--users", "9999999999999", "--transactions", "10"],
        vec!["--users", "10", "--transactions", "9999999999999"],
    ] {
        let o = run(s.am().arg("generate").args(&args));
        assert_eq!(o.code, 1, "{args:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        out.push_str(&format!("$ am generate {}\n", args.join(" ")));
        out.push_str(&o.snapshot());
    }
    // Nothing was created.
    s.assert_no_database();
    insta::assert_snapshot!(s.neutral(out));
}

on_every_engine!(a_bad_header_refuses_the_file_without_suggesting_skip_bad_rows);
fn a_bad_header_refuses_the_file_without_suggesting_skip_bad_rows(engine: Engine) {
    let s = Scratch::on(engine);
    s.write(
        "users.csv",
        "user_id,name,city_tier,created_at\n1,Asha,1,\n",
    );
    let mut out = String::new();
    for extra in [None, Some("--skip-bad-rows")] {
        let o = run(s.am().args(["import", "users", "users.csv"]).args(extra));
        assert_eq!(o.code, 1);
        assert_eq!(
            o.stderr,
            "am: users.csv: header: missing column email; expected user_id,name,email,city_tier,created_at\n"
        );
        out.push_str(&o.snapshot());
    }
    // The file was refused before a database was created for it.
    s.assert_no_database();
    insta::assert_snapshot!(s.neutral(out));
}

on_every_engine!(an_unclosed_quote_refuses_the_file_with_its_line_even_with_skip_bad_rows);
fn an_unclosed_quote_refuses_the_file_with_its_line_even_with_skip_bad_rows(engine: Engine) {
    let s = Scratch::on(engine);
    let mut text = String::from(
        "user_id,name,email,city_tier,created_at\n2,\"Ben Li,ben@example.com,1,2025-01-01\n",
    );
    for i in 0..200_000 {
        text.push_str(&format!(
            "{},U{i},u{i}@example.com,1,2025-01-01 00:00:00\n",
            10 + i
        ));
    }
    s.write("f.csv", &text);
    for extra in [None, Some("--skip-bad-rows")] {
        let o = run(s.am().args(["import", "users", "f.csv"]).args(extra));
        assert_eq!(o.code, 1, "{extra:?}: {}", o.stdout);
        assert_eq!(o.stdout, "");
        assert_eq!(
            o.stderr,
            "f.csv:2: a quoted value opens on this line and is never closed: the 200000 lines \
             after it were read as part of this row\n\
             am: f.csv: 1 bad row, nothing imported (fix the quote on line 2 first: it may hide \
             rows, so --skip-bad-rows cannot help)\n",
            "{extra:?}"
        );
    }
    assert_eq!(s.count("users"), 0);
}

on_every_engine!(import_takes_dates_as_midnight_and_refuses_second_60);
fn import_takes_dates_as_midnight_and_refuses_second_60(engine: Engine) {
    let s = Scratch::on(engine);
    s.write(
        "users.csv",
        "user_id,name,email,city_tier,created_at\n\
         1,Day,d@example.com,1,2026-11-30\n\
         2,Leap,l@example.com,1,2025-02-01 00:00:60\n",
    );
    let o = run(s
        .am()
        .args(["import", "users", "users.csv", "--skip-bad-rows"]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "skipped users.csv:3: created_at \"2025-02-01 00:00:60\" is not a valid time like \
         2025-01-31 13:45:00 or a date like 2025-01-31 (a real day, hours 00-23, minutes and \
         seconds 00-59)\nimported 1 row into users, skipped 1 bad row\n"
    );
    let q = sea_query::Query::select()
        .column("created_at")
        .from("users")
        .to_owned();
    let rows = s
        .store()
        .connection()
        .expect("connection")
        .rows(&q)
        .expect("read users");
    let midnight = NaiveDate::from_ymd_opt(2026, 11, 30)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a time");
    // Text as SQLite keeps the data tables' times, a TIMESTAMP elsewhere.
    match rows.as_slice() {
        [row] => match &row.0[..] {
            [Cell::Text(text)] => assert_eq!(text, "2026-11-30 00:00:00"),
            [Cell::Time(time)] => assert_eq!(*time, midnight),
            other => panic!("created_at is {other:?}"),
        },
        other => panic!("one user, got {other:?}"),
    }
}
