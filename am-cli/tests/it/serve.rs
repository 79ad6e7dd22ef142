//! `am serve`: the banner only once listening and able to serve, host names in `--addr`,
//! `--allowed-host`, and what `--help` says about the token.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::process::{Command, Stdio};

use crate::{Engine, Scratch, on_every_engine, run};

on_every_engine!(a_busy_port_fails_without_announcing_a_server);
fn a_busy_port_fails_without_announcing_a_server(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    for host in ["127.0.0.1", "localhost"] {
        let addr = format!("{host}:{port}");
        let out = run(s.am().args(["serve", "--addr", &addr]));
        assert_eq!(out.code, 1, "{addr}: {}", out.stderr);
        assert!(!out.stderr.contains("serving"), "{}", out.stderr);
        let expected = format!("am: cannot listen on {addr}: ");
        assert!(out.stderr.starts_with(&expected), "{}", out.stderr);
        assert!(out.stderr.contains("in use"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    drop(taken);
}

on_every_engine!(a_host_name_is_resolved);
fn a_host_name_is_resolved(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("am"))
        .current_dir(s.dir.path())
        .env_remove("AM_DB")
        .env_remove("AM_API_TOKEN")
        .env("RUST_LOG", "off")
        .args(s.db_args())
        .args(["serve", "--addr", "localhost:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start am serve");
    let mut line = String::new();
    if let Some(stderr) = child.stderr.take() {
        BufReader::new(stderr).read_line(&mut line).expect("read");
    }
    let _ = child.kill();
    let _ = child.wait();
    let re = regex::Regex::new(
        r"^serving audience\.db on http://(127\.0\.0\.1|\[::1\]):[1-9]\d* \(API under /api\); press Ctrl-C to stop\n$",
    )
    .expect("pattern");
    let line = s.neutral(line);
    assert!(re.is_match(&line), "{line:?}");
}

/// Marks the database read-only for SQLite itself (file-format write version 3 at byte 18
/// of the header): tests may run as root, where file permissions do not stop writes.
fn make_read_only(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open file");
    file.seek(SeekFrom::Start(18)).expect("seek");
    file.write_all(&[3]).expect("write header");
}

// SQLite only: a file SQLite itself marks read-only.
#[test]
fn a_read_only_database_is_refused_without_announcing_a_server() {
    let s = Scratch::new();
    assert_eq!(run(s.am().arg("init")).code, 0);
    make_read_only(&s.path("audience.db"));
    // Reads still work: the file is a good database, only not writable.
    assert_eq!(run(s.am().args(["rules", "list"])).code, 0);
    let out = run(s.am().args(["serve", "--addr", "127.0.0.1:0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("serving"), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("am: cannot serve audience.db: the database audience.db is read-only"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn help_warns_that_a_token_on_the_command_line_is_visible() {
    let out = run(Scratch::new().am().args(["serve", "--help"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("visible to every user of this machine (`ps`)"),
        "{help}"
    );
    assert!(
        help.contains("prefer the AM_API_TOKEN environment variable"),
        "{help}"
    );
    assert!(help.contains("--allowed-host"), "{help}");
}

on_every_engine!(allowed_hosts_are_checked_for_their_shape);
fn allowed_hosts_are_checked_for_their_shape(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let out = run(s.am().args(["serve", "--allowed-host", "not a host"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("expected a host name with or without a port"),
        "{}",
        out.stderr
    );
}
