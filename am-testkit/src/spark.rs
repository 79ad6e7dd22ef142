//! Throwaway Apache Spark servers for tests, spoken to through Spark Connect.
//!
//! [`server()`] starts one Spark Connect server (`local[2]`) per test process on first use,
//! and every test in that process shares it; each test takes its own database name with
//! [`SparkServer::fresh_database`]. [`cluster()`] starts, also once per process, a standalone
//! cluster on loopback (a master, one worker with 2 cores and 2 GiB) with a Connect server as
//! its driver, for tests that must see executors in other JVMs. [`start_private()`] starts a
//! server the test owns, so it can [`SparkServer::kill`] it on purpose; it is stopped and its
//! directory removed when dropped.
//!
//! Spark comes from `scripts/install-spark` (pyspark from PyPI, whose package is a Spark
//! home with the Connect server jar): `AM_SPARK_HOME`, else
//! `<workspace>/target/spark/venv/lib/python3*/site-packages/pyspark`. A missing install is a
//! panic that says what to run, never a skipped test. Java comes from `JAVA_HOME` or `PATH`.
//! The SQLite and PostgreSQL JDBC drivers from Debian (`/usr/share/java`) are on the
//! classpath, so tests can read the project's stores through `spark.read.jdbc`.
//!
//! Each server lives in a fresh temp dir under `/tmp` holding its logs (`server.log`, and
//! `master.log`, `worker.log` for the cluster), the warehouse (`warehouse/`), a Derby-backed
//! Hive metastore (`metastore_db/`), Spark's scratch space and an empty `conf/` (a
//! `spark-defaults.conf` of the machine's does not leak in). The catalog lives as long as the
//! server; a persistent one means a managed table's files and its catalog entry never
//! disagree, so `CREATE TABLE` after `DROP TABLE` works (the in-memory catalog forgets tables
//! on a restart but leaves their files, and the next `CREATE` fails with
//! `LOCATION_ALREADY_EXISTS`). Everything listens on 127.0.0.1 only (`SPARK_LOCAL_IP`); the
//! Connect port is a free one, the web UI is off, `spark.sql.shuffle.partitions` is 4 (the
//! default 200 tasks per shuffle costs seconds per query on test-sized data).
//!
//! Cost, measured on a 2-core machine with pyspark 4.2.1 and Java 17: [`server()`] takes
//! 13 to 14 s until the port answers; then the first query about 6 s (the Hive session
//! state starts) and the first `CREATE DATABASE` about 9 s (Derby creates the metastore);
//! later statements on tiny tables 0.7 to 5 s. [`cluster()`] takes about 32 s. Keep the
//! number of servers a test binary starts small.
//!
//! Cleanup: statics are never dropped, so a watchdog process (`sh`) holds the read end of a
//! pipe whose write end only this process has. When the test process ends, however it ends
//! (success, failed test, panic, `kill -9`), the pipe closes and the watchdog kills every
//! process group the server started (the JVMs, and the executors a worker launched) and
//! removes the temp dir.
//!
//! Database names: [`SparkServer::fresh_database`] only hands out a name unique on that
//! server; the test creates it (`CREATE DATABASE name`) with its own client, since this crate
//! has no Spark client.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take until its port answers.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The JDBC drivers Debian's `libxerial-sqlite-jdbc-java` and `libpostgresql-jdbc-java`
/// install.
const JDBC_JARS: [&str; 2] = [
    "/usr/share/java/sqlite-jdbc.jar",
    "/usr/share/java/postgresql.jar",
];

const INSTALL: &str = "run `scripts/install-spark` (as root, from the workspace root) or set \
    AM_SPARK_HOME to a Spark 4.2 home that holds bin/spark-submit and \
    jars/spark-connect_*.jar";

/// The Spark Connect server (`local[2]`) of this test process, started on first use.
///
/// Panics with the reason (and the server log's tail) if the server cannot be started; every
/// later call panics with the same message rather than trying again.
pub fn server() -> &'static SparkServer {
    static SERVER: OnceLock<Result<SparkServer, String>> = OnceLock::new();
    match SERVER.get_or_init(|| SparkServer::start(Mode::Local)) {
        Ok(server) => server,
        Err(message) => panic!("test Spark server: {message}"),
    }
}

/// The standalone cluster of this test process (master, one worker, Connect server as
/// driver), started on first use. Panics as [`server()`] does.
pub fn cluster() -> &'static SparkServer {
    static CLUSTER: OnceLock<Result<SparkServer, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| SparkServer::start(Mode::Cluster)) {
        Ok(server) => server,
        Err(message) => panic!("test Spark cluster: {message}"),
    }
}

/// A Spark Connect server (`local[2]`) of the caller's own: [`SparkServer::kill`] stops it at
/// once, dropping it stops it and removes its directory. Costs a full start-up every call.
pub fn start_private() -> SparkServer {
    SparkServer::start(Mode::Local).unwrap_or_else(|message| panic!("test Spark server: {message}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Local,
    Cluster,
}

/// A running throwaway Spark Connect server; see the module docs.
pub struct SparkServer {
    dir: PathBuf,
    port: u16,
    /// The standalone master's port, for a cluster.
    master_port: Option<u16>,
    next_database: AtomicU32,
    /// The processes started, each the leader of its own process group.
    processes: Vec<Child>,
    started_in: Duration,
    /// Write end of the watchdog's stdin, kept open for the life of the server. Declared
    /// last: it is dropped after `Drop::drop` has removed the pid list, so the watchdog finds
    /// nothing left to kill.
    _watchdog: ChildStdin,
}

impl SparkServer {
    /// The Spark Connect URL, `sc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("sc://127.0.0.1:{}", self.port)
    }

    /// The Spark Connect port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The standalone master's URL (`spark://127.0.0.1:PORT`), for a [`cluster()`].
    pub fn master_url(&self) -> Option<String> {
        self.master_port
            .map(|port| format!("spark://127.0.0.1:{port}"))
    }

    /// A database name no other call on this server returned (`am_test_1`, `am_test_2`, ...).
    /// Not created: the caller runs `CREATE DATABASE` with its client.
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        format!("am_test_{n}")
    }

    /// The temp dir holding the logs, warehouse and metastore.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Connect server's log (the driver's, for a cluster).
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines of the Connect server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log())
    }

    /// How long the start took, until the Connect port answered.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The pids of the processes this server started (the Connect server first), each the
    /// leader of its own process group.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Child::id).collect()
    }

    /// Kills the server's processes at once (`SIGKILL` to each process group) and waits for
    /// them, as a crash would; the directory stays until the value is dropped.
    pub fn kill(&mut self) {
        for child in &mut self.processes {
            kill_group(child.id());
        }
        for child in &mut self.processes {
            let _ = child.wait();
        }
    }

    fn start(mode: Mode) -> Result<SparkServer, String> {
        let home = spark_home()?;
        for jar in JDBC_JARS {
            if !Path::new(jar).is_file() {
                return Err(format!("{jar} is missing: {INSTALL}"));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("am-spark-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a temp dir in /tmp: {e}"))?
            .keep();
        // Before anything can fail half-way, so a failed start is cleaned up too.
        let watchdog = spawn_watchdog(&dir)?;
        let mut server = SparkServer {
            dir,
            port: 0,
            master_port: None,
            next_database: AtomicU32::new(1),
            processes: Vec::new(),
            started_in: Duration::ZERO,
            _watchdog: watchdog,
        };
        let began = Instant::now();
        server.launch(&home, mode)?;
        server.started_in = began.elapsed();
        Ok(server)
    }

    fn launch(&mut self, home: &Path, mode: Mode) -> Result<(), String> {
        for sub in ["conf", "tmp", "local", "work"] {
            fs::create_dir_all(self.dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", self.dir.join(sub).display()))?;
        }
        let master = match mode {
            Mode::Local => "local[2]".to_string(),
            Mode::Cluster => {
                let port = free_port()?;
                self.master_port = Some(port);
                let master = format!("spark://127.0.0.1:{port}");
                let mut command = self.spark_command(home, "bin/spark-class");
                command
                    .arg("org.apache.spark.deploy.master.Master")
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--webui-port", "0"]);
                self.spawn(command, "master.log")?;
                self.wait_for_port(port, "master.log", "the standalone master")?;

                let mut command = self.spark_command(home, "bin/spark-class");
                command
                    .arg("org.apache.spark.deploy.worker.Worker")
                    .arg(&master)
                    .args(["--host", "127.0.0.1", "--cores", "2", "--memory", "2g"])
                    .args(["--webui-port", "0", "--work-dir"])
                    .arg(self.dir.join("work"));
                self.spawn(command, "worker.log")?;
                self.wait_for_log(
                    "worker.log",
                    "Successfully registered with master",
                    "the standalone worker",
                )?;
                master
            }
        };

        self.port = free_port()?;
        let dir = self.dir.display().to_string();
        let mut command = self.spark_command(home, "bin/spark-submit");
        command
            .args([
                "--class",
                "org.apache.spark.sql.connect.service.SparkConnectServer",
            ])
            .args(["--name", "am-testkit", "--master", &master])
            .args(["--driver-memory", "1g", "--jars", &JDBC_JARS.join(",")]);
        let mut conf = vec![
            "spark.connect.grpc.binding.address=127.0.0.1".to_string(),
            format!("spark.connect.grpc.binding.port={}", self.port),
            "spark.driver.host=127.0.0.1".to_string(),
            "spark.driver.bindAddress=127.0.0.1".to_string(),
            "spark.ui.enabled=false".to_string(),
            "spark.sql.shuffle.partitions=4".to_string(),
            "spark.sql.catalogImplementation=hive".to_string(),
            format!("spark.sql.warehouse.dir={dir}/warehouse"),
            format!("spark.local.dir={dir}/local"),
            // The metastore and derby.log in the server's dir, not the working directory's.
            format!(
                "spark.hadoop.javax.jdo.option.ConnectionURL=\
                 jdbc:derby:;databaseName={dir}/metastore_db;create=true"
            ),
            format!(
                "spark.driver.extraJavaOptions=-Djava.io.tmpdir={dir}/tmp -Dderby.system.home={dir}"
            ),
        ];
        if mode == Mode::Cluster {
            conf.extend([
                "spark.executor.memory=1g".to_string(),
                "spark.cores.max=2".to_string(),
                format!("spark.executor.extraJavaOptions=-Djava.io.tmpdir={dir}/tmp"),
            ]);
        }
        for setting in conf {
            command.arg("--conf").arg(setting);
        }
        self.spawn(command, "server.log")?;
        // The port answers a moment before the server says it has started; wait for both.
        self.wait_for_port(self.port, "server.log", "the Spark Connect server")?;
        self.wait_for_log(
            "server.log",
            "Spark Connect server started at",
            "the Spark Connect server",
        )
    }

    /// `program` of the Spark home, with the environment every process of a server shares.
    fn spark_command(&self, home: &Path, program: &str) -> Command {
        let mut command = Command::new(home.join(program));
        command
            .current_dir(&self.dir)
            .env("SPARK_HOME", home)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_CONF_DIR", self.dir.join("conf"))
            .env("SPARK_LOG_DIR", &self.dir)
            .env("SPARK_PID_DIR", &self.dir)
            .env("SPARK_LOCAL_DIRS", self.dir.join("local"))
            .env("SPARK_WORKER_DIR", self.dir.join("work"))
            .env("SPARK_DAEMON_MEMORY", "512m")
            .env_remove("SPARK_MASTER_HOST")
            .env_remove("MASTER");
        command
    }

    /// Starts `command` in a process group of its own (a Ctrl-C at the terminal must not kill
    /// it before the watchdog, and killing the group takes its children along), output to
    /// `log` in the server's dir, and records its pid for the watchdog.
    fn spawn(&mut self, mut command: Command, log: &str) -> Result<(), String> {
        let path = self.dir.join(log);
        let out = fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
        let pid = child.id();
        self.processes.push(child);
        let pids = self.dir.join("pids");
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids)
            .and_then(|mut f| writeln!(f, "{pid}"))
            .map_err(|e| format!("cannot write {}: {e}", pids.display()))
    }

    /// Waits until `port` accepts connections, failing early if a process exits.
    fn wait_for_port(&mut self, port: u16, log: &str, what: &str) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self.wait(log, what, |_| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        })
    }

    /// Waits until `log` contains `line`, failing early if a process exits.
    fn wait_for_log(&mut self, log: &str, line: &str, what: &str) -> Result<(), String> {
        self.wait(log, what, |path| {
            fs::read_to_string(path).is_ok_and(|text| text.contains(line))
        })
    }

    fn wait(&mut self, log: &str, what: &str, ready: impl Fn(&Path) -> bool) -> Result<(), String> {
        let path = self.dir.join(log);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready(&path) {
                return Ok(());
            }
            for child in &mut self.processes {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{what} did not start: process {} exited ({status}); log {}:\n{}",
                        child.id(),
                        path.display(),
                        tail(&path)
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what} was not ready after {} s; log {}:\n{}",
                    START_TIMEOUT.as_secs(),
                    path.display(),
                    tail(&path)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SparkServer {
    fn drop(&mut self) {
        self.kill();
        // The pid list goes with the dir, so the watchdog (woken when the pipe closes right
        // after this) has nothing left to kill: those pids may be reused by then.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The Spark home: `AM_SPARK_HOME`, else pyspark in the workspace's `target/spark/venv`.
fn spark_home() -> Result<PathBuf, String> {
    let usable = |home: &Path| {
        home.join("bin/spark-submit").is_file()
            && fs::read_dir(home.join("jars")).is_ok_and(|entries| {
                entries.flatten().any(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("spark-connect_")
                })
            })
    };
    if let Some(home) = std::env::var_os("AM_SPARK_HOME") {
        let home = PathBuf::from(home);
        return if usable(&home) {
            Ok(home)
        } else {
            Err(format!(
                "AM_SPARK_HOME={} is not a Spark home with the Connect server: {INSTALL}",
                home.display()
            ))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let lib = workspace.join("target/spark/venv/lib");
    let found = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages/pyspark"))
        .find(|home| usable(home));
    found.ok_or_else(|| {
        format!(
            "no Spark found (looked at AM_SPARK_HOME and {}/python3*/site-packages/pyspark): \
             {INSTALL}",
            lib.display()
        )
    })
}

/// A port nobody listens on now. Another process may take it before Spark binds it; then
/// the start fails with the bind error in the log.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// `SIGKILL` to the process group `pgid` (std can only signal one process).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts the process that kills the server's process groups and removes `dir` once this
/// process has ended (or the server was dropped).
fn spawn_watchdog(dir: &Path) -> Result<ChildStdin, String> {
    // `cat` returns at end of input: when the write end closes, at this process's exit.
    // `env kill`: dash's own kill cannot signal a process group. A killed JVM may still hold
    // files for a moment: wait (up to 5 s) until it is gone, so `rm` does not race it.
    const SCRIPT: &str = r#"dir=$1
cat >/dev/null
pids=$(cat "$dir/pids" 2>/dev/null)
for p in $pids; do env kill -KILL -- "-$p" 2>/dev/null; done
i=0
while [ $i -lt 50 ]; do
  alive=
  for p in $pids; do
    state=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ] && alive=1
  done
  [ -z "$alive" ] && break
  sleep 0.1
  i=$((i + 1))
done
rm -rf "$dir""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("am-testkit-spark-watchdog")
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C at the terminal must not kill it before cleanup.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the cleanup watchdog (sh): {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the watchdog's stdin was not piped".to_string())
}

/// The last lines of a log, for start errors.
fn tail(log: &Path) -> String {
    let text =
        fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
