//! Which process owns a run, and whether that process is still alive.
//!
//! A process that creates runs on a database holds an exclusive lock on its own file in
//! `<database>.owners/` for as long as it lives. The operating system releases the lock when
//! the process ends, however it ends (exit, crash, `kill -9`), so any other process can tell
//! that a run's owner is gone, without guessing from timestamps or process ids: the owner's
//! lock can be taken. A run is abandoned exactly when that is so.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// This process's lock file per database, held open (and locked) until the process ends.
static HELD: OnceLock<Mutex<BTreeMap<PathBuf, (String, File)>>> = OnceLock::new();

/// The directory of owner lock files of the database at `db`.
fn owners_dir(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".owners");
    PathBuf::from(name)
}

/// A token names a file in the owners directory: digits, lower-case hex and one dot only,
/// so a token read back from the database can never name another path.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'.')
}

/// This process's owner token on the database at `db`, taking its lock on first use.
pub fn this_process(db: &Path) -> Result<String> {
    let held = HELD.get_or_init(Mutex::default);
    let mut held = held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((token, _)) = held.get(db) {
        return Ok(token.clone());
    }
    let dir = owners_dir(db);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("cannot create {}", dir.display()),
        source,
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("{}.{nanos:x}", std::process::id());
    let path = dir.join(&token);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from))
        .map_err(|source| Error::Io {
            context: format!("cannot lock {}", path.display()),
            source,
        })?;
    held.insert(db.to_path_buf(), (token.clone(), file));
    Ok(token)
}

/// Whether the owner `token` of runs on the database at `db` is still alive. An owner whose
/// lock file is missing or whose lock can be taken is gone; a malformed token owns nothing.
pub fn is_alive(db: &Path, token: &str) -> bool {
    if !is_token(token) {
        return false;
    }
    if HELD
        .get()
        .and_then(|h| h.lock().ok()?.get(db).map(|(t, _)| t == token))
        .unwrap_or(false)
    {
        return true;
    }
    let Ok(file) = OpenOptions::new()
        .write(true)
        .open(owners_dir(db).join(token))
    else {
        return false;
    };
    match file.try_lock() {
        // Taken: nobody held it. Dropping the file releases it again.
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        // The lock cannot be checked (a file system without locks): assume alive, so a
        // live process's runs are never failed under it.
        Err(TryLockError::Error(_)) => true,
    }
}

/// Removes the lock file of an owner found gone.
pub fn forget(db: &Path, token: &str) {
    if is_token(token) {
        // A file already removed, or one a new process raced to reuse, is fine to leave.
        let _ = std::fs::remove_file(owners_dir(db).join(token));
    }
}

/// How old an unlocked lock file must be before [`sweep`] removes it: a process creates its
/// file and then locks it, so a fresh unlocked file may belong to a process about to lock it.
const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the lock files of processes that ended at least [`SWEEP_AFTER`] ago, so the
/// directory holds about one file per live process rather than one per process ever run.
/// Their runs, if any are still open, read as abandoned all the same: a missing file is an
/// owner that is gone. Best effort: a file that cannot be read or removed is left.
pub fn sweep(db: &Path) {
    let Ok(entries) = std::fs::read_dir(owners_dir(db)) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let Some(token) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= SWEEP_AFTER);
        if is_token(&token) && old && !is_alive(db, &token) {
            forget(db, &token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stranger_without_a_lock_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a.db");
        let me = this_process(&db).expect("owner");
        assert_eq!(
            this_process(&db).expect("owner"),
            me,
            "one token per database"
        );
        assert!(is_alive(&db, &me));
        assert_eq!(crate::runs::pid_of(&me), Some(std::process::id()));

        // A lock file nobody holds: its process is gone.
        let gone = "1.abc";
        std::fs::write(owners_dir(&db).join(gone), b"").expect("write");
        assert!(!is_alive(&db, gone));
        forget(&db, gone);
        assert!(!owners_dir(&db).join(gone).exists());
        // No file at all, or a token that is not one.
        assert!(!is_alive(&db, "2.def"));
        assert!(!is_alive(&db, "../a.db"));
    }

    #[test]
    fn sweep_removes_only_old_files_of_gone_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("b.db");
        let me = this_process(&db).expect("owner");
        let old = std::time::SystemTime::now() - SWEEP_AFTER * 2;
        let age = |name: &str| {
            let file = File::options()
                .write(true)
                .open(owners_dir(&db).join(name))
                .expect("open");
            file.set_modified(old).expect("set mtime");
        };
        // Gone long ago: swept. Gone just now (or about to lock): kept. Alive: kept.
        std::fs::write(owners_dir(&db).join("3.aa"), b"").expect("write");
        age("3.aa");
        std::fs::write(owners_dir(&db).join("4.bb"), b"").expect("write");
        age(&me);
        // Not a token: never ours to remove.
        std::fs::write(owners_dir(&db).join("notes.txt"), b"").expect("write");
        age("notes.txt");
        sweep(&db);
        assert!(!owners_dir(&db).join("3.aa").exists());
        assert!(owners_dir(&db).join("4.bb").exists());
        assert!(owners_dir(&db).join(&me).exists());
        assert!(owners_dir(&db).join("notes.txt").exists());
        assert!(is_alive(&db, &me));
    }
}
