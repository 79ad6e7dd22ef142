//! Spark through Spark Connect (`backend::spark`): money stays exact, every bound value
//! type round-trips, sea-query's MySQL builder output runs, JDBC reads the project's SQLite
//! files, errors are our kinds naming what is wrong, and a server that is down, not Spark,
//! or killed mid-call fails the call within seconds.
//!
//! The shared server is am-testkit's (one per test process); the test of a server killed
//! mid-call starts a private one. Each start-up costs 10 to 20 s.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use am_sql::Error;
use am_sql::backend::spark::SparkEngine;
use am_sql::conn::Cell;
use am_testkit::spark;
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use sea_query::{Alias, Expr, ExprTrait, MysqlQueryBuilder, Query, Value, Values};

/// An engine on the shared server and a fresh database created on it.
fn engine_and_database() -> (SparkEngine, String) {
    let server = spark::server();
    let engine = SparkEngine::connect(&server.url()).expect("connect to the test server");
    let db = server.fresh_database();
    engine
        .execute(&format!("CREATE DATABASE {db}"))
        .expect("create database");
    (engine, db)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn money_is_exact_at_the_boundary() {
    let (engine, db) = engine_and_database();
    engine
        .execute(&format!(
            "CREATE TABLE {db}.payments (user_id BIGINT, amount DECIMAL(12,2)) USING parquet"
        ))
        .unwrap();
    engine
        .execute(&format!(
            "INSERT INTO {db}.payments VALUES (1, 0.10), (1, 0.20), (1, 999.70)"
        ))
        .unwrap();
    let rows = engine
        .rows(&format!(
            "SELECT SUM(amount) >= 1000, SUM(amount) > 1000, SUM(amount), typeof(SUM(amount)) \
             FROM {db}.payments"
        ))
        .unwrap();
    assert_eq!(
        rows[0].0,
        vec![
            Cell::Bool(true),
            Cell::Bool(false),
            Cell::Text("1000.00".into()),
            Cell::Text("decimal(22,2)".into())
        ]
    );
    let spenders = engine
        .user_ids(&format!(
            "SELECT user_id FROM {db}.payments GROUP BY user_id HAVING SUM(amount) >= 1000"
        ))
        .unwrap();
    assert_eq!(spenders, vec![1]);
}

#[test]
fn bound_values_of_every_supported_type_round_trip() {
    let (engine, _) = engine_and_database();
    let time = NaiveDate::from_ymd_opt(2025, 1, 2)
        .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 678_901))
        .unwrap();
    let utc = Utc.from_utc_datetime(&time);
    let cases: Vec<(Value, &str, Cell)> = vec![
        (Value::Bool(Some(true)), "boolean", Cell::Bool(true)),
        (Value::TinyInt(Some(-8)), "tinyint", Cell::Int(-8)),
        (Value::SmallInt(Some(-300)), "smallint", Cell::Int(-300)),
        (
            Value::Int(Some(i32::MIN)),
            "int",
            Cell::Int(i32::MIN.into()),
        ),
        (Value::BigInt(Some(i64::MAX)), "bigint", Cell::Int(i64::MAX)),
        (Value::TinyUnsigned(Some(255)), "smallint", Cell::Int(255)),
        (Value::SmallUnsigned(Some(65_535)), "int", Cell::Int(65_535)),
        (
            Value::Unsigned(Some(u32::MAX)),
            "bigint",
            Cell::Int(u32::MAX.into()),
        ),
        (Value::BigUnsigned(Some(42)), "bigint", Cell::Int(42)),
        (
            Value::BigUnsigned(Some(u64::MAX)),
            "decimal(20,0)",
            Cell::Text(u64::MAX.to_string()),
        ),
        (Value::Float(Some(1.5)), "float", Cell::Real(1.5)),
        (Value::Double(Some(-0.1)), "double", Cell::Real(-0.1)),
        (
            Value::String(Some("x'; DROP TABLE users; -- ü \" `".into())),
            "string",
            Cell::Text("x'; DROP TABLE users; -- ü \" `".into()),
        ),
        (Value::Char(Some('é')), "string", Cell::Text("é".into())),
        (
            Value::ChronoDate(Some(time.date())),
            "date",
            Cell::Text("2025-01-02".into()),
        ),
        (
            Value::ChronoDateTime(Some(time)),
            "timestamp",
            Cell::Time(time),
        ),
        (
            Value::ChronoDateTimeUtc(Some(utc)),
            "timestamp",
            Cell::Time(time),
        ),
        (Value::BigInt(None), "bigint", Cell::Null),
        (Value::String(None), "string", Cell::Null),
        (Value::ChronoDateTime(None), "timestamp", Cell::Null),
    ];
    let values = Values(cases.iter().map(|(v, _, _)| v.clone()).collect());
    let select: Vec<String> = (0..cases.len()).map(|_| "?, typeof(?)".into()).collect();
    let doubled = Values(
        values
            .0
            .iter()
            .flat_map(|v| [v.clone(), v.clone()])
            .collect(),
    );
    let rows = engine
        .query_bound(&format!("SELECT {}", select.join(", ")), &doubled)
        .unwrap();
    assert_eq!(rows.len(), 1);
    for (i, (value, spark_type, cell)) in cases.iter().enumerate() {
        assert_eq!(&rows[0].0[2 * i], cell, "value of {value:?}");
        assert_eq!(
            rows[0].0[2 * i + 1],
            Cell::Text(spark_type.to_string()),
            "type of {value:?}"
        );
    }

    // Bytes come back as Arrow prints binary; what matters is that they compare equal.
    let bytes = Values(vec![
        Value::Bytes(Some(vec![0, 159, 255])),
        Value::Bytes(Some(vec![0, 159, 255])),
    ]);
    let rows = engine
        .query_bound("SELECT ? = X'009FFF', hex(?)", &bytes)
        .unwrap();
    assert_eq!(
        rows[0].0,
        vec![Cell::Bool(true), Cell::Text("009FFF".into())]
    );
}

#[test]
fn mysql_builder_statements_run_with_bound_values() {
    let (engine, db) = engine_and_database();
    engine
        .execute(&format!(
            "CREATE TABLE {db}.users (user_id BIGINT, name STRING, signed_up TIMESTAMP) USING parquet"
        ))
        .unwrap();
    let signed_up: NaiveDateTime = NaiveDate::from_ymd_opt(2025, 6, 1)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .unwrap();
    let insert = Query::insert()
        .into_table((Alias::new(db.as_str()), Alias::new("users")))
        .columns([
            Alias::new("user_id"),
            Alias::new("name"),
            Alias::new("signed_up"),
        ])
        .values_panic([1i64.into(), "Ann".into(), signed_up.into()])
        .values_panic([2i64.into(), "x' OR '1'='1".into(), signed_up.into()])
        .values_panic([
            3i64.into(),
            "Bob".into(),
            (signed_up - chrono::Duration::days(1)).into(),
        ])
        .to_owned();
    let (sql, values) = insert.build(MysqlQueryBuilder);
    assert!(sql.contains('`') && sql.contains('?'), "{sql}");
    engine.execute_bound(&sql, &values).unwrap();

    let select = Query::select()
        .column(Alias::new("user_id"))
        .from((Alias::new(db.as_str()), Alias::new("users")))
        .and_where(Expr::col(Alias::new("signed_up")).gte(signed_up))
        .and_where(Expr::col(Alias::new("name")).ne("x' OR '1'='1"))
        .order_by(Alias::new("user_id"), sea_query::Order::Asc)
        .to_owned();
    let (sql, values) = select.build(MysqlQueryBuilder);
    assert_eq!(engine.user_ids_bound(&sql, &values).unwrap(), vec![1]);
}

#[test]
fn jdbc_reads_a_sqlite_file_with_64_bit_ids() {
    let (engine, db) = engine_and_database();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (user_id INTEGER PRIMARY KEY, spend NUMERIC);
         INSERT INTO users VALUES (5000000000, 12.5), (7, 0.1);",
    )
    .unwrap();
    drop(conn);
    // SQLite's INTEGER reads as 32-bit unless the schema says otherwise.
    engine
        .execute(&format!(
            "CREATE TEMPORARY VIEW users_{db} USING jdbc OPTIONS (url 'jdbc:sqlite:{}', \
             dbtable 'users', driver 'org.sqlite.JDBC', customSchema 'user_id BIGINT')",
            path.display()
        ))
        .unwrap();
    let ids = engine
        .user_ids(&format!("SELECT user_id FROM users_{db} ORDER BY user_id"))
        .unwrap();
    assert_eq!(ids, vec![7, 5_000_000_000]);
}

#[test]
fn a_missing_table_is_an_error_naming_it() {
    let (engine, db) = engine_and_database();
    let err = engine
        .user_ids(&format!("SELECT user_id FROM {db}.no_such_segment"))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no_such_segment") && message.contains("not found"),
        "{message}"
    );
    assert!(matches!(err, Error::Driver { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "source kept");

    let err = engine.user_ids("SELECT 'one' AS user_id").unwrap_err();
    assert!(
        err.to_string()
            .contains("`user_id` is Utf8, expected BIGINT or INT"),
        "{err}"
    );
}

#[test]
fn malformed_urls_are_refused_naming_the_form() {
    for url in [
        "http://127.0.0.1:15002",
        "sc://127.0.0.1",
        "sc://127.0.0.1:15002/default",
        "postgres://am_test@/db",
        "",
    ] {
        let err = SparkEngine::connect(url).unwrap_err();
        assert!(matches!(err, Error::BadOptions(_)), "{url}: {err:?}");
        assert!(err.to_string().contains("sc://HOST:PORT"), "{err}");
    }
}

#[test]
fn a_closed_port_fails_as_unavailable_within_seconds() {
    let url = format!("sc://127.0.0.1:{}", free_port());
    let began = Instant::now();
    let err = SparkEngine::connect(&url).unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(
        matches!(&err, Error::Unavailable { at, .. } if *at == url),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn a_port_that_does_not_speak_spark_connect_fails_as_unavailable_within_seconds() {
    // Accepts connections and reads whatever comes, never answering.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("sc://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let began = Instant::now();
    let err = SparkEngine::connect(&url).unwrap_err();
    let took = began.elapsed();
    assert!(
        matches!(&err, Error::Unavailable { at, .. } if *at == url),
        "{err:?}"
    );
    assert!(
        took < am_sql::backend::spark::HANDSHAKE_TIMEOUT + Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn a_server_killed_during_a_long_call_fails_it_within_seconds() {
    let mut server = spark::start_private();
    let engine = SparkEngine::connect(&server.url()).unwrap();
    let long = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            // Hours of hashing on two cores: it only ends when the server goes away.
            let result =
                engine.rows("SELECT count(*) FROM range(0, 1000000000000) WHERE hash(id) = 7");
            (result, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    assert!(!long.is_finished(), "the long query ended early");
    let killed = Instant::now();
    server.kill();
    let (result, ended) = long.join().unwrap();
    let err = result.unwrap_err();
    let after = ended.duration_since(killed);
    assert!(
        after < am_sql::backend::spark::WATCH_INTERVAL * 3 + Duration::from_secs(2),
        "failed {after:?} after the kill"
    );
    assert!(
        matches!(&err, Error::Unavailable { at, .. } if *at == server.url()),
        "{err:?}"
    );
    // A new call fails at once: nothing answers on the port.
    let began = Instant::now();
    let err = SparkEngine::connect(&server.url()).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(began.elapsed() < Duration::from_secs(5));
    let err = engine.execute("SELECT 1").unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}
