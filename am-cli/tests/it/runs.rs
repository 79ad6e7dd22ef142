//! `am runs`, and runs across processes: a run belongs to the process that runs it, so a
//! second process never fails it, and a process killed mid-run leaves runs that the next
//! reader sees as failed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Engine, Scratch, on_every_engine, run};

/// A database with enough data and rules that `am run --all` takes a few seconds.
fn busy_database(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    for args in [
        vec!["init"],
        vec![
            "generate",
            "--users",
            "30000",
            "--transactions",
            "600000",
            "--end",
            "2025-06-30",
        ],
    ] {
        let out = run(s.am().args(&args));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    for i in 1..=12 {
        let file = format!("r{i}.json");
        s.write(
            &file,
            &format!(
                r#"{{"rule_name": "Over {i}", "conditions": [{{"field": "total_spend", "operator": ">", "value": {}}}, {{"field": "city_tier", "operator": "!=", "value": {}}}]}}"#,
                i * 700,
                i % 3
            ),
        );
        let out = run(s.am().args(["rules", "add", &file]));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    s
}

fn spawn_am(s: &Scratch, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("am"))
        .current_dir(s.dir.path())
        .env_remove("AM_DB")
        .env_remove("AM_API_TOKEN")
        .env("RUST_LOG", "off")
        .args(s.db_args())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start am")
}

fn runs_json(s: &Scratch) -> Vec<serde_json::Value> {
    let out = run(s.am().args(["--json", "runs", "list", "-n", "100"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout).expect("runs as JSON")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Starts `am run --all` and stops it (SIGSTOP) once one of its runs is running.
fn stopped_mid_run(s: &Scratch) -> Child {
    let mut child = spawn_am(s, &["run", "--all"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if runs_json(s).iter().any(|r| r["status"] == "running") {
            signal(&child, "STOP");
            return child;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no run ever started");
}

on_every_engine!(a_server_started_during_a_run_leaves_it_alone);
fn a_server_started_during_a_run_leaves_it_alone(engine: Engine) {
    let s = busy_database(engine);
    let mut refresh = stopped_mid_run(&s);
    // The server fails abandoned runs at start: this one's process is alive, only stopped.
    let mut server = spawn_am(&s, &["serve", "--addr", "127.0.0.1:0"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stderr.take().expect("stderr")),
        &mut line,
    )
    .expect("read");
    assert!(line.starts_with("serving"), "{line}");
    assert!(
        runs_json(&s).iter().all(|r| r["status"] != "failed"),
        "{:?}",
        runs_json(&s)
    );
    signal(&refresh, "CONT");
    let status = refresh.wait().expect("wait");
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "am run --all failed: {status}");
    let runs = runs_json(&s);
    assert_eq!(runs.len(), 12);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
}

on_every_engine!(a_run_killed_with_its_process_reads_as_failed);
fn a_run_killed_with_its_process_reads_as_failed(engine: Engine) {
    let s = busy_database(engine);
    let mut refresh = stopped_mid_run(&s);
    let pid = refresh.id();
    signal(&refresh, "KILL");
    refresh.wait().expect("wait");
    let runs = runs_json(&s);
    assert_eq!(runs.len(), 12);
    let abandoned = format!(
        "abandoned: the process that ran it (pid {pid}) ended before recording how it ended"
    );
    for r in &runs {
        match r["status"].as_str() {
            Some("succeeded") => {}
            Some("failed") => assert_eq!(r["error"], abandoned.as_str(), "{r}"),
            other => panic!("run {} is {other:?}", r["id"]),
        }
    }
    assert!(runs.iter().any(|r| r["status"] == "failed"));

    // One run, as `am runs show` tells it.
    let failed = runs
        .iter()
        .find(|r| r["status"] == "failed")
        .and_then(|r| r["id"].as_i64())
        .expect("a failed run");
    let out = run(s.am().args(["runs", "show", &failed.to_string()]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("status     failed\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("error      {abandoned}\n")),
        "{}",
        out.stdout
    );
    let out = run(s.am().args(["runs", "show", "999999"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, "am: no run #999999 (see `am runs list`)\n");
}

// SQLite only: watches the WAL file grow and reads SQLite's own catalog of triggers.
#[test]
fn a_generate_killed_midway_leaves_the_data_and_change_tracking_as_they_were() {
    let s = Scratch::new();
    assert_eq!(run(s.am().arg("init")).code, 0);
    let mut load = spawn_am(
        &s,
        &["generate", "--users", "100000", "--transactions", "1000000"],
    );
    // Mid-load: the WAL fills with the rows written so far.
    let wal = s.path("audience.db-wal");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(Instant::now() < deadline, "the load never got going");
        assert!(
            load.try_wait().expect("poll").is_none(),
            "the load ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&load, "KILL");
    load.wait().expect("wait");

    // Read before any `am` opens the file (opening would repair missing triggers).
    let conn = rusqlite::Connection::open(s.path("audience.db")).expect("open");
    let (triggers, users): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
                     AND name LIKE '%data_version%'),
                    (SELECT count(*) FROM users)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!((triggers, users), (12, 0));
}
