//! A throwaway PostgreSQL server for tests.
//!
//! [`server()`] starts one server per test process on first use, from the PostgreSQL binaries
//! installed on the machine, and every test in that process shares it; each test takes its own
//! empty database with [`PgServer::fresh_database`]. A missing PostgreSQL is a panic that says
//! what to install, never a skipped test.
//!
//! The cluster lives in a fresh temp dir, on `/dev/shm` when it has 2 GiB free (a database
//! takes about 8 MB; on disk, creating one is about ten times slower), else `/tmp`. It holds
//! `data/` (initdb, UTF-8, locale `C.UTF-8` where the machine has it, else `C`), `server.log`
//! and the unix socket; the server also listens on a free loopback TCP port ([`PgServer::tcp_uri`]).
//! Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`) and `max_connections`
//! is 200 so parallel tests with a pool each fit. As root (CI), initdb and the server run as
//! the `postgres` user, or `nobody` where there is none, through `runuser`.
//!
//! Cost, measured on a 2-core machine with PostgreSQL 15 on `/dev/shm`: the first `server()`
//! call takes 0.8 to 0.95 s (initdb 0.7 s, start 0.12 s), `fresh_database` 30 to 50 ms, later
//! `server()` calls nothing. On disk (ext4): 1.8 to 2.3 s and 250 to 470 ms. A runner that
//! starts a process per test (cargo-nextest) pays the start-up once per test.
//!
//! Cleanup: statics are never dropped, so a watchdog process (`sh`) holds the read end of a
//! pipe whose write end only this process has. When the test process ends, however it ends
//! (success, failed test, panic, `kill -9`), the pipe closes and the watchdog stops the server
//! (`pg_ctl stop -m immediate`) and removes the temp dir.
//!
//! The `postgres` client is synchronous and runs its own tokio runtime: don't use a [`Client`]
//! inside an async task; use it from `spawn_blocking` or a plain thread. `server()` and
//! `fresh_database` may be called from anywhere, async tests included.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub use ::postgres::{Client, NoTls};

/// The superuser initdb creates; trust authentication, so no password.
const USER: &str = "am_test";

const MISSING: &str = "no PostgreSQL server binaries found (looked at AM_PG_BIN, \
    /usr/lib/postgresql/*/bin and `pg_config --bindir`): install them \
    (Debian: `apt-get install postgresql-15`) or set AM_PG_BIN to the directory that holds \
    initdb and pg_ctl";

/// The server of this test process, started on first use.
///
/// Panics with the reason (and the server log's tail) if the server cannot be started; every
/// later call panics with the same message rather than trying again.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SERVER.get_or_init(PgServer::start) {
        Ok(server) => server,
        Err(message) => panic!("test PostgreSQL server: {message}"),
    }
}

/// A running throwaway server; see the module docs.
pub struct PgServer {
    /// The temp dir: socket dir, and parent of `data/` and `server.log`.
    dir: PathBuf,
    port: u16,
    next_database: AtomicU32,
    /// Write end of the watchdog's stdin, kept open for the life of the process.
    _watchdog: ChildStdin,
}

impl PgServer {
    /// Creates a new empty database and returns its URI, in the libpq form
    /// `postgres://am_test@/DBNAME?host=/socket/dir&port=PORT` that psql also accepts.
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("am_test_{n}");
        let admin = self.uri("postgres");
        let create = format!("CREATE DATABASE {name}");
        // A plain thread, so this works from async tests too (see the module docs).
        let created =
            std::thread::spawn(move || Client::connect(&admin, NoTls)?.batch_execute(&create))
                .join()
                .expect("thread creating a test database panicked");
        if let Err(e) = created {
            panic!("test PostgreSQL server: cannot create database {name}: {e}");
        }
        self.uri(&name)
    }

    /// A client connected to `uri`. Not for use inside an async task (see the module docs).
    pub fn client(&self, uri: &str) -> Client {
        Client::connect(uri, NoTls)
            .unwrap_or_else(|e| panic!("test PostgreSQL server: cannot connect to {uri}: {e}"))
    }

    /// The URI of `database` over loopback TCP:
    /// `postgres://am_test@127.0.0.1:PORT/DBNAME`, for clients without unix sockets.
    pub fn tcp_uri(&self, database_uri: &str) -> String {
        let name = database_uri
            .split_once("@/")
            .and_then(|(_, rest)| rest.split('?').next())
            .unwrap_or("postgres");
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The port number, of the socket file and of the loopback TCP listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser every URI connects as.
    pub fn user(&self) -> &str {
        USER
    }

    fn uri(&self, database: &str) -> String {
        let host = percent_encode(&self.dir.to_string_lossy());
        format!(
            "postgres://{USER}@/{database}?host={host}&port={}",
            self.port
        )
    }

    fn start() -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let runner = Runner::for_this_process()?;
        let dir = runner.make_dir()?;
        // Before anything can fail half-way, so a failed start is cleaned up too.
        let watchdog = spawn_watchdog(&dir, &runner, &bin)?;
        // The server also listens on loopback TCP (for clients that cannot use a unix
        // socket, such as Spark's JDBC reader), on a port that was free a moment ago.
        let port = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("cannot find a free port: {e}"))?;
        let data = dir.join("data");

        let mut initdb = runner.command(bin.join("initdb"), &dir);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8"])
            .arg(format!("--locale={}", locale()))
            .args(["--no-sync", "--no-instructions"]);
        run(&mut initdb, "initdb")?;

        let config = format!(
            "\n# am-testkit: a throwaway server for tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             port = {port}\n\
             max_connections = 200\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            dir.to_string_lossy().replace('\'', "''")
        );
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot write {}: {e}",
                    data.join("postgresql.conf").display()
                )
            })?;

        let log = dir.join("server.log");
        let mut start = runner.command(bin.join("pg_ctl"), &dir);
        start
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("start");
        run(&mut start, "pg_ctl start").map_err(|e| format!("{e}\nserver log:\n{}", tail(&log)))?;

        Ok(PgServer {
            dir,
            port,
            next_database: AtomicU32::new(1),
            _watchdog: watchdog,
        })
    }
}

/// Where initdb and pg_ctl are: `AM_PG_BIN`, else the highest `/usr/lib/postgresql/*/bin`, else
/// `pg_config --bindir`.
fn bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("AM_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "AM_PG_BIN={} holds no initdb and pg_ctl: set it to PostgreSQL's bin dir \
                 (Debian: /usr/lib/postgresql/15/bin, from `apt-get install postgresql-15`)",
                dir.display()
            ))
        };
    }
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        name.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    let installed = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|version_dir| has_server(&version_dir.join("bin")))
        .max_by_key(|version_dir| version(version_dir));
    if let Some(version_dir) = installed {
        return Ok(version_dir.join("bin"));
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| has_server(dir))
        .ok_or_else(|| MISSING.to_string())
}

/// `C.UTF-8` where the machine has it: like the product's servers, `lower()` then folds
/// non-ASCII letters, which catches an engine that relies on it. Else `C`.
fn locale() -> &'static str {
    let listed = Command::new("locale")
        .arg("-a")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_lowercase())
        .unwrap_or_default();
    if listed.lines().any(|l| l == "c.utf8" || l == "c.utf-8") {
        "C.UTF-8"
    } else {
        "C"
    }
}

/// How to run initdb and pg_ctl: directly, or as root through `runuser` as an unprivileged
/// user (PostgreSQL refuses to run as root).
struct Runner {
    /// The user and its uid and gid, when running as root.
    as_user: Option<(String, u32, u32)>,
}

impl Runner {
    fn for_this_process() -> Result<Runner, String> {
        // A file this process creates is owned by its effective uid; std has no geteuid.
        let probe = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
        let root = probe.metadata().map_err(|e| e.to_string())?.uid() == 0;
        if !root {
            return Ok(Runner { as_user: None });
        }
        for user in ["postgres", "nobody"] {
            if let (Some(uid), Some(gid)) = (id(user, "-u"), id(user, "-g")) {
                return Ok(Runner {
                    as_user: Some((user.to_string(), uid, gid)),
                });
            }
        }
        Err(
            "running as root, and neither user `postgres` nor `nobody` exists to run \
             PostgreSQL (it refuses to run as root)"
                .to_string(),
        )
    }

    /// A fresh temp dir the server's user owns and anyone may enter (so a pasted URI works
    /// for any local user).
    fn make_dir(&self) -> Result<PathBuf, String> {
        // tmpfs where it has room: on disk, CREATE DATABASE takes about ten times as long.
        // As root, $TMPDIR may be closed to the server's user; /tmp is open to every user.
        let on_disk = if self.as_user.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let shm = Path::new("/dev/shm");
        let mut bases = vec![on_disk];
        if free_bytes(shm).is_some_and(|free| free >= SHM_ROOM) {
            bases.insert(0, shm.to_path_buf());
        }
        let mut errors = Vec::new();
        let dir = bases
            .iter()
            .find_map(|base| {
                let made = tempfile::Builder::new().prefix("am-pg-").tempdir_in(base);
                made.map_err(|e| errors.push(format!("in {}: {e}", base.display())))
                    .ok()
            })
            .ok_or_else(|| format!("cannot create a temp dir: {}", errors.join("; ")))?
            .keep();
        let fail = |e: std::io::Error| format!("cannot prepare {}: {e}", dir.display());
        if let Some((_, uid, gid)) = &self.as_user {
            std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).map_err(fail)?;
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(fail)?;
        Ok(dir)
    }

    /// `program`, as the server's user, in `dir` (the test's working directory may be closed
    /// to that user).
    fn command(&self, program: PathBuf, dir: &Path) -> Command {
        let mut command = match &self.as_user {
            Some((user, _, _)) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        command.current_dir(dir);
        command
    }

    /// The words of [`Runner::command`] for `program`, for the watchdog's shell.
    fn words(&self, program: PathBuf) -> Vec<OsString> {
        let mut words: Vec<OsString> = match &self.as_user {
            Some((user, _, _)) => ["runuser", "-u", user, "--"].map(OsString::from).into(),
            None => Vec::new(),
        };
        words.push(program.into_os_string());
        words
    }
}

/// Free space /dev/shm needs to be used: a test database takes about 8 MB.
const SHM_ROOM: u64 = 2 << 30;

/// Free bytes on the file system of `dir`, from `df` (std has no statvfs).
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn id(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|_| out.status.success())
}

/// Starts the process that stops the server and removes `dir` once this process has ended.
fn spawn_watchdog(dir: &Path, runner: &Runner, bin: &Path) -> Result<ChildStdin, String> {
    // `cat` returns at end of input: when the write end closes, at this process's exit.
    const SCRIPT: &str = r#"dir=$1; shift
cat >/dev/null
"$@" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null 2>&1
rm -rf "$dir""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("am-testkit-watchdog")
        .arg(dir)
        .args(runner.words(bin.join("pg_ctl")))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C at the terminal must not kill it before cleanup.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the cleanup watchdog (sh): {e}"))?;
    Ok(child.stdin.take().expect("stdin was piped"))
}

/// Runs `command`, turning a failure into a message with its output.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what} ({:?}): {e}", command.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The last lines of the server log, for start errors.
fn tail(log: &Path) -> String {
    let text =
        fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Percent-encodes all but unreserved characters and `/`, for a socket path in a URI.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn socket_paths_are_percent_encoded_in_uris() {
        assert_eq!(percent_encode("/tmp/am-pg-Ab9_.~"), "/tmp/am-pg-Ab9_.~");
        assert_eq!(
            percent_encode("/tmp/a b&c=d?é"),
            "/tmp/a%20b%26c%3Dd%3F%C3%A9"
        );
    }
}
