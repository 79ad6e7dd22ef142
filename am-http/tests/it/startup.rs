//! What `Server::start` refuses before anything is announced.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use am_http::{ServeError, Server, ServerConfig, SystemClock};
use am_sql::Store;

use crate::support::{Engine, conn, store_with_data};

/// Marks a SQLite database read-only for SQLite itself: a file-format write version above 2
/// (byte 18 of the header) makes every connection read-only. Tests may run as root, where
/// file permissions do not stop writes; this does.
pub fn make_read_only(store: &Store) {
    // Fold the WAL into the file first, so the header written is the one read.
    conn(store)
        .query_sql(
            "PRAGMA wal_checkpoint(TRUNCATE)",
            sea_query::Values(Vec::new()),
            &mut |_| Ok(()),
        )
        .expect("checkpoint");
    let path = store.path().expect("a SQLite file");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open file");
    file.seek(SeekFrom::Start(18)).expect("seek");
    file.write_all(&[3]).expect("write header");
}

// SQLite only: a file SQLite itself marks read-only.
#[tokio::test]
async fn a_read_only_database_is_refused_before_serving() {
    let (_dir, store) = store_with_data(Engine::Sqlite, 10, 50);
    make_read_only(&store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let started = Server::start(
        listener,
        store,
        ServerConfig::default(),
        Arc::new(SystemClock),
    )
    .await;
    let err = match started {
        Ok(_) => panic!("a read-only database was served"),
        Err(e) => e,
    };
    assert!(matches!(err, ServeError::ReadOnly(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("test.db is read-only"), "{message}");
}
