//! The server does not outlive its test process, however that process ends: normal exit, a
//! panic, or `kill -9`. Each test runs itself again as the test process (told so by an
//! environment variable), then checks that the postmaster, its children and the temp dir are
//! gone after that process has ended.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_MODE: &str = "AM_TESTKIT_CLEANUP_CHILD";
const REPORT: &str = "am-testkit server:";

#[test]
fn server_is_gone_after_the_test_process_exits() {
    run_as("exit", "server_is_gone_after_the_test_process_exits");
}

#[test]
fn server_is_gone_after_a_test_panics() {
    run_as("panic", "server_is_gone_after_a_test_panics");
}

#[test]
fn server_is_gone_after_the_test_process_is_killed() {
    run_as("kill", "server_is_gone_after_the_test_process_is_killed");
}

fn run_as(mode: &str, test: &str) {
    match std::env::var(CHILD_MODE) {
        Ok(mode) => test_process(&mode),
        Err(_) => server_is_gone_after_the_test_process_ends(mode, test),
    }
}

/// A test process: starts the server with a connection open, reports the postmaster's pid,
/// its children and the temp dir on one line, then ends as `mode` says.
fn test_process(mode: &str) {
    let pg = am_testkit::postgres::server();
    let _open = pg.client(&pg.fresh_database());
    let pid_file = std::fs::read_to_string(pg.socket_dir().join("data/postmaster.pid")).unwrap();
    let postmaster: u32 = pid_file.lines().next().unwrap().parse().unwrap();
    let mut pids = vec![postmaster];
    pids.extend(children_of(postmaster));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("{REPORT} {} {}", pg.socket_dir().display(), pids.join(","));
    std::io::stdout().flush().unwrap();
    match mode {
        "exit" => std::process::exit(0),
        "panic" => panic!("a failing test"),
        _ => std::thread::sleep(Duration::from_secs(120)), // killed by the parent
    }
}

fn server_is_gone_after_the_test_process_ends(mode: &str, test: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The harness prints its own lines too: read up to the report, and keep the pipe open
    // until the process has ended so that its last writes don't fail.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let line = (&mut stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| Some(line.split_once(REPORT)?.1.to_string()))
        .unwrap_or_default();
    if mode == "kill" {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    drop(stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (dir, pids) = line
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{mode}: the test process reported nothing; stderr:\n{stderr}"));
    let pids: Vec<u32> = pids.split(',').map(|p| p.parse().unwrap()).collect();
    assert!(pids.len() > 1, "{mode}: no server children seen: {pids:?}");
    match mode {
        "exit" => assert!(out.status.success(), "{mode}: {:?} {stderr}", out.status),
        "panic" => assert_eq!(out.status.code(), Some(101), "{mode}: {stderr}"),
        _ => assert_eq!(out.status.signal(), Some(9), "{mode}: {:?}", out.status),
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        let dir_left = Path::new(dir).exists();
        if alive.is_empty() && !dir_left {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: 15 s after the test process ended, server processes {alive:?} still run \
             and/or {dir} still exists ({dir_left})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is a live process (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z'))
    })
}

fn children_of(parent: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").unwrap();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the ")" of the command name: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(parent.to_string().as_str())
        })
        .collect()
}
