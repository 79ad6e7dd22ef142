//! `am serve`: the banner only once listening, and host names in `--addr`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::{Scratch, run};

#[test]
fn a_busy_port_fails_without_announcing_a_server() {
    let s = Scratch::new();
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

#[test]
fn a_host_name_is_resolved() {
    let s = Scratch::new();
    assert_eq!(run(s.am().arg("init")).code, 0);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("am"))
        .current_dir(s.dir.path())
        .env_remove("AM_DB")
        .env_remove("AM_API_TOKEN")
        .env("RUST_LOG", "off")
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
    assert!(re.is_match(&line), "{line:?}");
}
