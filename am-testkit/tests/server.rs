//! The shared test server: it starts, hands out distinct usable databases, and its URIs work
//! for the Rust client and for psql.

use std::process::Command;

use am_testkit::postgres::{Client, NoTls, server};

fn database_name(uri: &str) -> &str {
    let after_slash = &uri["postgres://am_test@/".len()..];
    &after_slash[..after_slash.find('?').expect("uri has parameters")]
}

#[test]
fn server_starts_and_listens_on_its_socket_and_loopback_only() {
    let pg = server();
    let socket = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port()));
    assert!(socket.exists(), "no socket at {}", socket.display());
    let database = pg.fresh_database();
    let mut client = pg.client(&database);
    let row = client
        .query_one(
            "SELECT current_setting('listen_addresses'), current_user::text",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "127.0.0.1");
    assert_eq!(row.get::<_, String>(1), pg.user());
    // The same database over TCP, for clients without unix sockets (JDBC).
    let tcp = pg.tcp_uri(&database);
    assert_eq!(
        tcp,
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            pg.user(),
            pg.port(),
            database_name(&database)
        )
    );
    let mut over_tcp = Client::connect(&tcp, NoTls).expect("connect over TCP");
    let row = over_tcp
        .query_one(
            "SELECT current_database()::text, inet_server_addr()::text",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), database_name(&database));
    assert_eq!(row.get::<_, String>(1), "127.0.0.1/32");
}

#[test]
fn server_is_set_up_for_fast_parallel_tests() {
    let pg = server();
    let mut client = pg.client(&pg.fresh_database());
    for (setting, expected) in [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("max_connections", "200"),
        ("server_encoding", "UTF8"),
    ] {
        let row = client
            .query_one("SELECT current_setting($1)", &[&setting])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "setting {setting}");
    }
}

#[test]
fn a_utf8_locale_folds_non_ascii_case_as_production_servers_do() {
    let pg = server();
    let mut client = pg.client(&pg.fresh_database());
    let row = client
        .query_one("SELECT current_setting('lc_ctype'), lower('ÄÖ')", &[])
        .unwrap();
    let (ctype, lowered): (String, String) = (row.get(0), row.get(1));
    match ctype.as_str() {
        "C.UTF-8" => assert_eq!(lowered, "äö"),
        "C" => assert_eq!(lowered, "ÄÖ"),
        other => panic!("unexpected lc_ctype {other}"),
    }
}

#[test]
fn fresh_databases_are_distinct_empty_and_usable() {
    let pg = server();
    let (first, second) = (pg.fresh_database(), pg.fresh_database());
    assert_ne!(first, second);
    let mut a = pg.client(&first);
    let mut b = pg.client(&second);
    a.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    let count: i64 = a.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(count, 1);
    let in_second: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        in_second, 0,
        "the second database sees the first one's table"
    );
    let name: String = b
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, database_name(&second));
}

#[test]
fn a_second_call_reuses_the_same_server() {
    let first = server();
    let from_another_thread = std::thread::spawn(|| server() as *const _ as usize)
        .join()
        .unwrap();
    assert!(std::ptr::eq(first, server()));
    assert_eq!(from_another_thread, first as *const _ as usize);
    // And it is one postmaster: every database is served by the same one.
    let pid = |uri: &str| -> i32 {
        let mut c = first.client(uri);
        c.query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(
        pid(&first.fresh_database()),
        pid(&server().fresh_database())
    );
}

#[test]
fn the_uri_has_the_libpq_form_and_the_rust_client_accepts_it() {
    let pg = server();
    let uri = pg.fresh_database();
    let expected = format!(
        "postgres://am_test@/{}?host={}&port={}",
        database_name(&uri),
        pg.socket_dir().display(),
        pg.port()
    );
    assert_eq!(uri, expected);
    let mut client = Client::connect(&uri, NoTls).unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn psql_accepts_the_same_uri() {
    let uri = server().fresh_database();
    let out = Command::new("psql")
        .args([
            uri.as_str(),
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_database()",
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        database_name(&uri)
    );
}

#[test]
fn many_connections_at_once_fit() {
    let pg = server();
    let uri = pg.fresh_database();
    let mut clients: Vec<Client> = (0..100).map(|_| pg.client(&uri)).collect();
    let name = database_name(&uri);
    let open: i64 = clients[0]
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert_eq!(open, 100);
}

#[tokio::test]
async fn an_async_test_gets_a_database_and_uses_it_off_the_runtime() {
    let uri = server().fresh_database();
    let one: i32 = tokio::task::spawn_blocking(move || {
        server()
            .client(&uri)
            .query_one("SELECT 1", &[])
            .unwrap()
            .get(0)
    })
    .await
    .unwrap();
    assert_eq!(one, 1);
}
