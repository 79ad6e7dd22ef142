//! Drives the real `am` binary: output snapshots (timings and clock times redacted) and exit
//! codes, including every error path.
//!
//! Tests of behaviour run on every engine the crate is built for: `fn name(engine: Engine)`
//! followed by `on_every_engine!(name);` makes `name::sqlite` and, with the `postgres`
//! feature, `name::postgres`. Tests about SQLite files (and the few that use no database at
//! all) are plain `#[test]`s.

mod data;
mod demo;
mod errors;
#[cfg(feature = "postgres")]
#[path = "../../../am-http/tests/it/postgres.rs"]
mod postgres;
mod rules;
mod run;
mod runs;
mod serve;
#[cfg(feature = "spark")]
mod spark;
mod surface;
mod terminal;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use am_sql::Store;
use assert_cmd::Command;

/// The engine a scratch database is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `audience.db` in the scratch directory.
    Sqlite,
    /// A new database on the test server (see `postgres.rs`).
    #[cfg(feature = "postgres")]
    Postgres,
}

/// `name::sqlite` and (with the `postgres` feature) `name::postgres`, each calling
/// `name(engine)`.
macro_rules! on_every_engine {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::Engine::Sqlite)
            }

            // PostgreSQL's snapshots sit beside SQLite's (`..@postgres.snap`); their text is the
            // same wherever the engines agree, since `Scratch::neutral` names the database alike.
            #[cfg(feature = "postgres")]
            #[test]
            fn postgres() {
                insta::with_settings!({ snapshot_suffix => "postgres" }, {
                    super::$name($crate::Engine::Postgres)
                })
            }
        }
    };
}
pub(crate) use on_every_engine;

/// A scratch directory and the database `am` runs on: on SQLite `audience.db` in the
/// directory (`am`'s default, so no `--db` is passed), on PostgreSQL a new database of its
/// own, passed as `--db URI`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub engine: Engine,
    /// The PostgreSQL database's URI.
    uri: Option<String>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    /// A scratch directory on SQLite.
    pub fn new() -> Scratch {
        Scratch::on(Engine::Sqlite)
    }

    pub fn on(engine: Engine) -> Scratch {
        let uri = match engine {
            Engine::Sqlite => None,
            #[cfg(feature = "postgres")]
            Engine::Postgres => Some(crate::postgres::postgres_location()),
        };
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
            engine,
            uri,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `am` run in the scratch directory on the scratch database, with no inherited settings.
    pub fn am(&self) -> Command {
        let mut cmd = Command::cargo_bin("am").expect("the am binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AM_DB")
            .env_remove("AM_API_TOKEN")
            .env_remove("AM_ALLOWED_HOSTS")
            .env_remove("AM_ENGINE")
            .env_remove("AM_SPARK_SOURCE")
            .env_remove("AM_SPARK_DATABASE")
            .env_remove("RUST_LOG");
        if let Some(uri) = &self.uri {
            cmd.args(["--db", uri]);
        }
        cmd
    }

    /// `am` on the database `name`: on SQLite the file of that name in the scratch
    /// directory (`--db name`); a server has no file names, so elsewhere the scratch database.
    pub fn am_db(&self, name: &str) -> Command {
        let mut cmd = self.am();
        if self.uri.is_none() {
            cmd.args(["--db", name]);
        }
        cmd
    }

    /// `am` run from `dir`, on the scratch database.
    pub fn am_in(&self, dir: &Path) -> Command {
        let mut cmd = self.am();
        cmd.current_dir(dir);
        if self.uri.is_none() {
            cmd.arg("--db").arg(self.path("audience.db"));
        }
        cmd
    }

    /// The `--db` arguments that name the scratch database for `am` run in the directory.
    pub fn db_args(&self) -> Vec<OsString> {
        match &self.uri {
            Some(uri) => vec!["--db".into(), uri.into()],
            None => Vec::new(),
        }
    }

    /// The scratch database, opened as the test's own tool (it must exist).
    pub fn store(&self) -> Store {
        Store::open_existing(self.location()).expect("open the scratch database")
    }

    pub fn location(&self) -> am_sql::Location {
        match &self.uri {
            Some(uri) => am_sql::Location::from(uri.as_str()),
            None => am_sql::Location::from(self.path("audience.db")),
        }
    }

    /// Asserts no database was created: no file on SQLite; elsewhere, no schema of ours.
    pub fn assert_no_database(&self) {
        match self.engine {
            Engine::Sqlite => assert!(!self.path("audience.db").exists()),
            #[cfg(feature = "postgres")]
            Engine::Postgres => {
                let opened = Store::open_existing(self.location());
                assert!(
                    matches!(opened, Err(am_sql::Error::NoDatabase(_))),
                    "{opened:?}"
                );
            }
        }
    }

    /// How many rows `table` has.
    pub fn count(&self, table: &str) -> i64 {
        let q = sea_query::Query::select()
            .expr(sea_query::Expr::cust("1"))
            .from(sea_query::Alias::new(table))
            .to_owned();
        self.store()
            .connection()
            .expect("connection")
            .count(&q)
            .unwrap_or_else(|e| panic!("count {table}: {e}"))
    }

    /// `text` with the database named as on SQLite (`audience.db`), so one snapshot checks
    /// the output of every engine. `am` names a server by its URI without the password, or
    /// as given.
    pub fn neutral(&self, text: String) -> String {
        match &self.uri {
            Some(uri) => text
                .replace(uri.as_str(), "audience.db")
                .replace(&self.location().to_string(), "audience.db"),
            None => text,
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

/// What a run printed and how it ended.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Outcome {
    let out = cmd.output().expect("run am");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Outcome {
    /// Exit code, stdout and stderr in one text for a snapshot, with clock times and
    /// durations replaced so the snapshot does not depend on when or how fast it ran.
    pub fn snapshot(&self) -> String {
        redact(&format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        ))
    }
}

pub fn redact(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?(\.\d+)?Z?",
            "[time]",
        ),
        (r"\b\d+(\.\d+)?(ms|s)\b", "[duration]"),
        (r"\b\d+m\d{2}s\b", "[duration]"),
        (
            r#""(elapsed_ms|duration|duration_ms)": \d+"#,
            "\"$1\": \"[duration]\"",
        ),
    ];
    let mut out = text.to_string();
    for (pattern, with) in rules {
        let re = regex::Regex::new(pattern).expect("valid pattern");
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

pub fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}
