//! Spark as the engine of refreshes (`Store::with_spark`): the store (SQLite here) keeps
//! rules, catalog, runs and members, Spark computes them, from its catalog's tables or from
//! the store's own tables through JDBC; the members equal the reference evaluator's, the
//! stored `sql_query` replays on Spark, catalog tables' files tell freshness, and a Spark
//! that is down fails the runs and keeps the old segments.

use std::collections::{BTreeMap, BTreeSet};

use am_core::arbitrary::{arb_dataset, arb_expr, as_of};
use am_core::evaluate::{Dataset, evaluate_set};
use am_core::expr::Expr;
use am_core::rule::RuleId;
use am_sql::backend::spark::{SparkEngine, SparkOptions, SparkSource, attach_store_tables};
use am_sql::progress::NoProgress;
use am_sql::refresh::{RefreshRequest, RefreshTargets};
use am_sql::runs::{RunFilter, RunStatus, RunTrigger};
use am_sql::store::Store;
use am_testkit::spark;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::differential::{Shape, arb_shape, case_of};
use crate::engine::{Case, load_dataset};
use crate::engines::{Engine, TestDb};

/// `store` computing on the shared test server, reading from `source`.
fn on_spark(store: &Store, source: SparkSource) -> Store {
    let mut options = SparkOptions::new(spark::server().url());
    options.source = source;
    store.clone().with_spark(options).expect("spark options")
}

/// Copies the store's data tables into a fresh Spark database as Parquet tables, as a lake
/// would hold them; returns the database.
fn copy_to_catalog(store: &Store) -> String {
    let server = spark::server();
    let engine = SparkEngine::connect(&server.url()).expect("connect");
    attach_store_tables(&engine, store.location()).expect("store tables");
    let db = server.fresh_database();
    engine
        .execute(&format!("CREATE DATABASE `{db}`"))
        .expect("database");
    for table in [
        "users",
        "user_locations",
        "credit_card_transactions",
        "upi_transactions",
    ] {
        engine
            .execute(&format!(
                "CREATE TABLE `{db}`.`{table}` USING parquet AS SELECT * FROM `{table}`"
            ))
            .expect("copy");
    }
    db
}

/// The members the stored `sql_query` of `rule_id` returns on Spark, with the data tables
/// `source` names.
fn replay_on_spark(db: &mut TestDb, rule_id: RuleId, source: &SparkSource) -> BTreeSet<i64> {
    let sql = db
        .store
        .segment_for_rule(rule_id)
        .expect("segment")
        .expect("built")
        .sql_query;
    let engine = SparkEngine::connect(&spark::server().url()).expect("connect");
    engine
        .execute("SET spark.sql.session.timeZone = UTC")
        .expect("zone");
    match source {
        SparkSource::Jdbc => attach_store_tables(&engine, db.store.location()).expect("tables"),
        SparkSource::Catalog(Some(database)) => {
            engine.execute(&format!("USE `{database}`")).expect("use");
        }
        SparkSource::Catalog(None) => {}
    }
    engine.user_ids(&sql).expect("replay").into_iter().collect()
}

/// Every rule's segment, computed on Spark from `source`, equals the evaluator's members,
/// and its `sql_query` returns them on Spark.
fn spark_segments_equal_the_evaluator(
    ds: &Dataset,
    rules: &[(Expr, Shape)],
    jdbc: bool,
) -> Result<(), TestCaseError> {
    let mut db = TestDb::new(Engine::Sqlite);
    load_dataset(db.conn(), ds);
    let case = case_of(db.conn(), rules);
    let source = if jdbc {
        SparkSource::Jdbc
    } else {
        SparkSource::Catalog(Some(copy_to_catalog(&db.store)))
    };
    let store = on_spark(&db.store, source.clone());
    let report = store
        .refresh_planned(&case.plan, &case.rules, as_of(), &NoProgress)
        .expect("refresh");
    prop_assert!(report.succeeded(), "{:?}", report);
    let mut segments: BTreeMap<RuleId, BTreeSet<i64>> = BTreeMap::new();
    for node in &case.plan.nodes {
        let expected = evaluate_set(&node.compute, ds, as_of(), &segments);
        prop_assert_eq!(
            &db.members(node.rule_id),
            &expected,
            "rule {} computed as {:?} from {}",
            node.rule_id,
            node.compute,
            source
        );
        prop_assert_eq!(
            &replay_on_spark(&mut db, node.rule_id, &source),
            &expected,
            "sql_query of rule {}",
            node.rule_id
        );
        let segment = db
            .store
            .segment_for_rule(node.rule_id)
            .expect("segment")
            .expect("built");
        prop_assert_eq!(segment.engine.as_str(), "spark");
        segments.insert(node.rule_id, expected);
    }
    Ok(())
}

proptest! {
    // Each case costs seconds of Spark: few cases, each through both sources.
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn spark_segments_equal_the_evaluator_from_both_sources(
        ds in arb_dataset(),
        rules in proptest::collection::vec((arb_expr(), arb_shape()), 1..4),
    ) {
        spark_segments_equal_the_evaluator(&ds, &rules, true)?;
        spark_segments_equal_the_evaluator(&ds, &rules, false)?;
    }
}

fn money_rules(store: &Store) -> (i64, i64) {
    let at_least = store
        .create_rule_json(
            r#"{"rule_name": "At least 1000", "conditions": [{"field": "total_spend", "operator": ">=", "value": 1000}]}"#,
        )
        .expect("rule");
    let over = store
        .create_rule_json(
            r#"{"rule_name": "Over 1000", "conditions": [{"field": "total_spend", "operator": ">", "value": 1000}]}"#,
        )
        .expect("rule");
    (at_least, over)
}

fn add_payments(db: &mut TestDb) {
    use crate::engines::{TxRow, UserRow, insert_card, insert_users};
    insert_users(
        db.conn(),
        &[UserRow::new(1), UserRow::new(2), UserRow::new(3)],
    );
    let pay = |id: i64, user: i64, amount: f64| TxRow {
        transaction_id: id,
        user_id: user,
        amount: Some(amount),
        text: Some("IndiGo".into()),
        category: Some("Travel".into()),
        transaction_date: Some("2025-03-03 10:00:00".into()),
    };
    insert_card(
        db.conn(),
        &[
            pay(1, 1, 0.10),
            pay(2, 1, 0.20),
            pay(3, 1, 999.70),
            pay(4, 2, 1000.01),
            pay(5, 3, 999.99),
        ],
    );
}

fn refresh(
    store: &Store,
    targets: RefreshTargets,
) -> am_sql::Result<am_sql::refresh::RefreshReport> {
    store.refresh(&RefreshRequest::new(targets, RunTrigger::Cli), &NoProgress)
}

#[test]
fn money_is_exact_at_the_boundary_through_the_store_api() {
    let mut db = TestDb::new(Engine::Sqlite);
    add_payments(&mut db);
    let (at_least, over) = money_rules(&db.store);
    let store = on_spark(&db.store, SparkSource::Jdbc);
    let report = refresh(&store, RefreshTargets::All).expect("refresh");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(db.members(at_least), [1, 2].into());
    assert_eq!(db.members(over), [2].into());
    // Explain shows the SQL Spark runs: every node whole, reading no segment table, though
    // the planner's reuse is still reported; preview counts on Spark.
    let explained = store.explain(over).expect("explain");
    let node = explained
        .nodes
        .iter()
        .find(|n| n.rule_id == over)
        .expect("node");
    assert!(node.reuse.is_some(), "{explained:?}");
    assert!(node.sql.contains('`'), "{}", node.sql);
    assert!(!node.sql.contains("segment_output_"), "{}", node.sql);
    let spec: am_core::rule::RuleSpec = serde_json::from_str(
        r#"{"rule_name": "preview", "conditions": [{"field": "total_spend", "operator": ">=", "value": 1000}]}"#,
    )
    .expect("spec");
    assert_eq!(
        store
            .preview(&spec, None, None)
            .expect("preview")
            .audience_size,
        2
    );
}

#[test]
fn a_spark_that_is_down_fails_the_runs_and_keeps_the_old_segments() {
    let mut db = TestDb::new(Engine::Sqlite);
    add_payments(&mut db);
    let (at_least, _) = money_rules(&db.store);
    let built = refresh(&db.store, RefreshTargets::All).expect("refresh on SQLite");
    assert!(built.succeeded());
    let before = db
        .store
        .segment_for_rule(at_least)
        .expect("segment")
        .expect("built");

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let down = db
        .store
        .clone()
        .with_spark(SparkOptions::new(format!("sc://127.0.0.1:{port}")))
        .expect("options");
    let err = refresh(&down, RefreshTargets::All).expect_err("Spark is down");
    assert!(matches!(err, am_sql::Error::Unavailable { .. }), "{err:?}");
    assert_eq!(db.members(at_least), [1, 2].into());
    let after = db
        .store
        .segment_for_rule(at_least)
        .expect("segment")
        .expect("built");
    assert_eq!(after.last_refreshed_at, before.last_refreshed_at);
    assert_eq!(after.engine, "sqlite");
    let failed = db
        .store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        })
        .expect("runs");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&port.to_string()))),
        "{failed:?}"
    );
}

#[test]
fn catalog_tables_tell_freshness_by_their_files() {
    let mut db = TestDb::new(Engine::Sqlite);
    add_payments(&mut db);
    let (at_least, _) = money_rules(&db.store);
    let lake = copy_to_catalog(&db.store);
    let store = on_spark(&db.store, SparkSource::Catalog(Some(lake.clone())));
    assert!(
        refresh(&store, RefreshTargets::All)
            .expect("refresh")
            .succeeded()
    );
    let again = refresh(&store, RefreshTargets::Stale).expect("stale");
    assert!(again.nodes.is_empty(), "nothing changed: {again:?}");

    // An ETL job appends to the lake's table: the segments are stale and rebuilt from it.
    let engine = SparkEngine::connect(&spark::server().url()).expect("connect");
    engine
        .execute(&format!(
            "INSERT INTO `{lake}`.`credit_card_transactions` VALUES \
             (6, 3, 0.01, 'IndiGo', 'Travel', TIMESTAMP '2025-03-04 10:00:00')"
        ))
        .expect("append");
    let stale = refresh(&store, RefreshTargets::Stale).expect("stale");
    assert_eq!(stale.nodes.len(), 2, "{stale:?}");
    assert!(stale.succeeded(), "{stale:?}");
    assert_eq!(db.members(at_least), [1, 2, 3].into());
}

#[test]
fn a_standalone_cluster_computes_the_same_members() {
    let mut db = TestDb::new(Engine::Sqlite);
    add_payments(&mut db);
    let (at_least, over) = money_rules(&db.store);
    let mut options = SparkOptions::new(spark::cluster().url());
    options.source = SparkSource::Jdbc;
    let store = db.store.clone().with_spark(options).expect("options");
    let report = refresh(&store, RefreshTargets::All).expect("refresh");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(db.members(at_least), [1, 2].into());
    assert_eq!(db.members(over), [2].into());
}

#[test]
fn contains_and_starts_with_fold_ascii_letters_only_on_spark() {
    use am_core::expr::Pred;
    use am_core::field::Field;

    use crate::engine::{checked, folding_cases, folding_users};
    use crate::engines::insert_users;

    let mut db = TestDb::new(Engine::Sqlite);
    insert_users(db.conn(), &folding_users());
    // Spark's `lower` folds every letter; the contract folds ASCII letters only.
    let cases = folding_cases();
    let mut case = Case::new();
    for (i, (test, _)) in cases.iter().enumerate() {
        let condition = Expr::Pred(Pred::Profile {
            field: Field::Name,
            test: test.clone(),
        });
        case.add_direct(
            db.conn(),
            i as RuleId + 1,
            checked(Some(condition), vec![], None),
        );
    }
    let store = on_spark(&db.store, SparkSource::Jdbc);
    let report = store
        .refresh_planned(&case.plan, &case.rules, as_of(), &NoProgress)
        .expect("refresh");
    assert!(report.succeeded(), "{report:?}");
    for (i, (test, expected)) in cases.iter().enumerate() {
        let expected: BTreeSet<i64> = expected.iter().copied().collect();
        assert_eq!(db.members(i as RuleId + 1), expected, "{test:?}");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn jdbc_reads_a_postgresql_store_over_tcp() {
    let server = am_testkit::postgres::server();
    let uri = server.tcp_uri(&crate::engines::postgres_location());
    let store = Store::open(uri.as_str()).expect("open over TCP");
    let conn = store.connection().expect("connection");
    let mut db = TestDb {
        engine: Engine::Postgres,
        store,
        conn,
        dir: None,
    };
    add_payments(&mut db);
    let (at_least, over) = money_rules(&db.store);
    let spark = on_spark(&db.store, SparkSource::Jdbc);
    let report = refresh(&spark, RefreshTargets::All).expect("refresh");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.engine, "spark");
    assert_eq!(db.members(at_least), [1, 2].into());
    assert_eq!(db.members(over), [2].into());
    // A socket-only URI cannot be read through JDBC: the refresh says so.
    let socket = Store::open(crate::engines::postgres_location().as_str()).expect("open");
    money_rules(&socket);
    let err = refresh(&on_spark(&socket, SparkSource::Jdbc), RefreshTargets::All)
        .expect_err("unix socket");
    assert!(err.to_string().contains("over TCP"), "{err}");
}

/// Locations at the poles, across the antimeridian and exactly on a circle: Spark's members
/// and replayed `sql_query` equal the evaluator's, from the store's tables and from a lake.
#[test]
fn locations_at_the_edges_agree_with_the_evaluator_from_both_sources() {
    let (ds, rules) = crate::geo::edge_dataset();
    let rules: Vec<(Expr, Shape)> = rules.into_iter().map(|e| (e, Shape::Direct)).collect();
    for jdbc in [true, false] {
        spark_segments_equal_the_evaluator(&ds, &rules, jdbc).expect("equal");
    }
}

/// A lake without `user_locations` computes every other rule and still tells freshness;
/// the table appearing there is a change of the data.
#[test]
fn a_lake_without_locations_keeps_its_freshness() {
    let mut db = TestDb::new(Engine::Sqlite);
    add_payments(&mut db);
    money_rules(&db.store);
    let lake = copy_to_catalog(&db.store);
    let engine = SparkEngine::connect(&spark::server().url()).expect("connect");
    engine
        .execute(&format!("DROP TABLE `{lake}`.`user_locations`"))
        .expect("drop");
    let store = on_spark(&db.store, SparkSource::Catalog(Some(lake.clone())));
    assert!(
        refresh(&store, RefreshTargets::All)
            .expect("refresh")
            .succeeded()
    );
    let again = refresh(&store, RefreshTargets::Stale).expect("stale");
    assert!(again.nodes.is_empty(), "nothing changed: {again:?}");

    engine
        .execute(&format!(
            "CREATE TABLE `{lake}`.`user_locations` (user_id BIGINT, latitude DOUBLE, \
             longitude DOUBLE, updated_at TIMESTAMP) USING parquet"
        ))
        .expect("create");
    engine
        .execute(&format!(
            "INSERT INTO `{lake}`.`user_locations` VALUES (1, 12.97, 77.59, NULL)"
        ))
        .expect("insert");
    let stale = refresh(&store, RefreshTargets::Stale).expect("stale");
    assert_eq!(stale.nodes.len(), 2, "{stale:?}");
    assert!(stale.succeeded(), "{stale:?}");
}
