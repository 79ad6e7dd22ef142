//! Drives the real `am` binary: output snapshots (timings and clock times redacted) and exit
//! codes, including every error path.

mod data;
mod demo;
mod errors;
mod rules;
mod run;
mod runs;
mod serve;
mod surface;
mod terminal;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A scratch directory with its own `audience.db`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `am` run in the scratch directory, with no inherited settings.
    pub fn am(&self) -> Command {
        let mut cmd = Command::cargo_bin("am").expect("the am binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AM_DB")
            .env_remove("AM_API_TOKEN")
            .env_remove("AM_ALLOWED_HOSTS")
            .env_remove("RUST_LOG");
        cmd
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
