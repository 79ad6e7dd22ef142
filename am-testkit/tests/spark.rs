//! The Spark servers: the shared one and the cluster start and answer on their ports, a
//! private one dies when killed and leaves nothing behind when dropped, and the shared one
//! does not outlive its test process, however that process ends (normal exit, `kill -9`).
//!
//! Every start-up costs 10 to 30 s of both cores, so the tests take turns (`ONE_AT_A_TIME`)
//! rather than starting JVMs side by side.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use am_testkit::spark;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const CHILD_MODE: &str = "AM_TESTKIT_SPARK_CLEANUP_CHILD";
const REPORT: &str = "am-testkit spark server:";

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
fn shared_server_starts_and_its_port_answers() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = spark::server();
    eprintln!("shared Spark server started in {:?}", server.started_in());
    assert_eq!(server.url(), format!("sc://127.0.0.1:{}", server.port()));
    assert!(
        answers(server.port()),
        "port {} does not answer",
        server.port()
    );
    let log = std::fs::read_to_string(server.log()).unwrap();
    assert!(
        log.contains("Spark Connect server started at: 127.0.0.1:"),
        "{}",
        server.log_tail()
    );
    assert!(log.contains("sqlite-jdbc.jar"), "JDBC jars not added");
    let (a, b) = (server.fresh_database(), server.fresh_database());
    assert_ne!(a, b);
    assert!(a.starts_with("am_test_"), "{a}");
    assert!(
        std::ptr::eq(server, spark::server()),
        "one server per process"
    );
}

#[test]
fn cluster_starts_with_a_registered_worker() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = spark::cluster();
    eprintln!("Spark cluster started in {:?}", cluster.started_in());
    assert!(answers(cluster.port()));
    let master = cluster.master_url().expect("a cluster has a master");
    let port: u16 = master.rsplit(':').next().unwrap().parse().unwrap();
    assert!(answers(port), "master {master} does not answer");
    let worker = std::fs::read_to_string(cluster.dir().join("worker.log")).unwrap();
    assert!(worker.contains("Successfully registered with master"));
    assert_eq!(cluster.pids().len(), 3, "master, worker, Connect server");
    let driver = std::fs::read_to_string(cluster.log()).unwrap();
    assert!(driver.contains(&master), "driver not on {master}");
}

#[test]
fn private_server_dies_when_killed_and_is_removed_when_dropped() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = spark::start_private();
    let (port, dir, pid) = (server.port(), server.dir().to_owned(), server.pids()[0]);
    assert!(answers(port));
    server.kill();
    assert!(!answers(port), "port {port} still answers after kill");
    assert!(!running(pid), "pid {pid} still runs after kill");
    assert!(dir.exists(), "the dir stays until drop, for the log");
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn server_is_gone_after_the_test_process_exits() {
    run_as("exit", "server_is_gone_after_the_test_process_exits");
}

#[test]
fn server_is_gone_after_the_test_process_is_killed() {
    run_as("kill", "server_is_gone_after_the_test_process_is_killed");
}

fn run_as(mode: &str, test: &str) {
    match std::env::var(CHILD_MODE) {
        Ok(mode) => test_process(&mode),
        Err(_) => {
            let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            server_is_gone_after_the_test_process_ends(mode, test)
        }
    }
}

/// A test process: starts the shared server, reports its dir and the pids of the JVM and
/// its children on one line, then ends as `mode` says.
fn test_process(mode: &str) {
    let server = spark::server();
    let leader = server.pids()[0];
    let mut pids = vec![leader];
    pids.extend(children_of(leader));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("{REPORT} {} {}", server.dir().display(), pids.join(","));
    std::io::stdout().flush().unwrap();
    match mode {
        "exit" => std::process::exit(0),
        _ => std::thread::sleep(Duration::from_secs(300)), // killed by the parent
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
    // Read up to the report, and keep the pipe open until the process has ended so that its
    // last writes don't fail.
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
    match mode {
        "exit" => assert!(out.status.success(), "{mode}: {:?} {stderr}", out.status),
        _ => assert_eq!(out.status.signal(), Some(9), "{mode}: {:?}", out.status),
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        let dir_left = Path::new(dir).exists();
        if alive.is_empty() && !dir_left {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: 20 s after the test process ended, server processes {alive:?} still run \
             and/or {dir} still exists ({dir_left})"
        );
        std::thread::sleep(Duration::from_millis(100));
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
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(parent.to_string().as_str())
        })
        .collect()
}
