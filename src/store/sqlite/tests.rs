//! The embedded store's own tests (the contract of both stores is in tests/api).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::SqliteStore;
use crate::domain::{MessageId, MessageStatus, Mode, NewMessage, Outcome};
use crate::store::types::Completion;

fn executed(n: i64) -> (NewMessage, Completion) {
    let id = MessageId::new();
    let m = NewMessage {
        id,
        mode: Mode::Sync,
        received_at: n,
        ..NewMessage::example(serde_json::json!({"n": n}))
    };
    let c = Completion {
        id,
        attempt: 1,
        started_at: n,
        finished_at: n,
        outcome: Outcome::Succeeded,
        status: MessageStatus::Succeeded,
        run_at: n,
        blocking: false,
        response: None,
        trace: "[]".into(),
        error: None,
        error_code: None,
        events: Vec::new(),
    };
    (m, c)
}

/// A store in a new file whose execution records wait up to `wait` for others
/// to share their commit; the directory lives as long as the guard returned.
fn store_waiting(wait: Duration) -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowgate.db");
    let store = SqliteStore::open_with(path.to_str().unwrap(), wait).unwrap();
    (dir, path, store)
}

/// How many messages `path` holds, as another connection sees them (what is
/// committed).
fn committed(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

/// Execution records wait for more to join their commit, and an operation
/// with a caller waiting ends the wait: the records share one commit and the
/// read sees them. Told by what is committed, not by how long it took.
#[tokio::test]
async fn execution_records_share_a_commit_and_a_read_ends_the_wait() {
    // A wait far longer than the test: only the read can end it.
    let (_dir, path, store) = store_waiting(Duration::from_secs(3600));
    let before = store.commits();
    let mut last = None;
    for n in 0..2 {
        let (m, c) = executed(n);
        last = Some(m.id);
        store.record_executed(m, c).await;
    }
    assert_eq!(committed(&path), 0, "committed before the wait was over");
    let read = tokio::time::timeout(Duration::from_secs(60), store.get(last.unwrap()))
        .await
        .expect("the read ended the wait");
    assert!(read.unwrap().is_some(), "the read sees the record");
    assert_eq!(committed(&path), 2);
    // The writer counts its commit just after it answers the read.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.commits() == before {
        assert!(Instant::now() < deadline, "the commit was never counted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(store.commits() - before, 1, "both records in one commit");
    store.close().await.unwrap();
}

/// A record that nothing follows is committed on its own once its wait is over.
#[tokio::test]
async fn a_lone_execution_record_is_committed_when_its_wait_is_over() {
    let (_dir, path, store) = store_waiting(Duration::from_millis(20));
    let before = store.commits();
    let (m, c) = executed(0);
    store.record_executed(m, c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&path) < 1 || store.commits() == before {
        assert!(Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.commits() - before, 1);
    store.close().await.unwrap();
}

/// Each opening of the file is a new generation, above every one before.
#[tokio::test]
async fn the_generation_grows_at_each_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generation.db");
    let path = path.to_str().unwrap();
    let first = SqliteStore::open(path).unwrap();
    first.close().await.unwrap();
    let second = SqliteStore::open(path).unwrap();
    assert_eq!(second.generation(), first.generation() + 1);
    assert!(first.generation() >= 1);
    second.close().await.unwrap();
}

/// A database made before inputs had a table of their own keeps every input.
#[tokio::test]
async fn upgrading_moves_inputs_to_their_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let id = MessageId::new();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        conn.execute_batch(super::MIGRATIONS[0].2).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (1, 'messages', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages (id, tenant, trigger, mode, status, received_at, run_at, input)
             VALUES (?1, 'acme', 'Orders', 'async', 'queued', 1, 1, '{\"order\":7}')",
            [id.to_string()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(path.to_str().unwrap()).unwrap();
    let view = store
        .get(id)
        .await
        .unwrap()
        .expect("the message is still there");
    assert_eq!(view.input, serde_json::json!({"order": 7}));
    let pending = store.recover(2).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].input, Ok(serde_json::json!({"order": 7})));
    store.close().await.unwrap();
}

/// Accepted messages and the execution records that arrive with them are one
/// transaction: as two, every tail page both write went to the WAL twice.
#[tokio::test]
async fn accepts_and_the_records_beside_them_share_one_commit() {
    // Records wait far longer than the test: only the accept ends the wait.
    let (_dir, path, store) = store_waiting(Duration::from_secs(3600));
    let before = store.commits();
    let (m, c) = executed(0);
    store.record_executed(m, c).await;
    let accepted = NewMessage::example(serde_json::json!({"n": 1}));
    let out = store
        .enqueue(std::slice::from_ref(&accepted))
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    // Closing commits nothing more and answers after the writer counted.
    store.close().await.unwrap();
    assert_eq!(committed(&path), 2);
    assert_eq!(
        store.commits() - before,
        1,
        "the accept and the record in one commit"
    );
}

/// When SQLite rolls the whole transaction back under a record (as a full disk
/// or an I/O error may), an accept later in the same batch is refused and not
/// stored: run on, its savepoint would have begun and committed a transaction
/// of its own, storing a message whose caller is told it was not.
#[tokio::test]
async fn an_accept_after_a_rolled_back_record_is_refused_and_not_stored() {
    let (_dir, path, store) = store_waiting(Duration::from_secs(3600));
    let (m, c) = executed(0);
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER roll_back BEFORE INSERT ON messages WHEN NEW.id = '{}' \
             BEGIN SELECT RAISE(ROLLBACK, 'as a full disk would'); END;",
            m.id
        ))
        .unwrap();
    store.record_executed(m, c).await;
    let accepted = NewMessage::example(serde_json::json!({"n": 1}));
    let refused = store.enqueue(std::slice::from_ref(&accepted)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        store.get(accepted.id).await.unwrap().is_none(),
        "refused, so not stored"
    );
    // The next batch is a transaction of its own again.
    let next = NewMessage::example(serde_json::json!({"n": 2}));
    store.enqueue(std::slice::from_ref(&next)).await.unwrap();
    assert!(store.get(next.id).await.unwrap().is_some());
    store.close().await.unwrap();
}

/// A new file gets small pages (each commit writes the pages it touched whole);
/// a file made with other pages keeps them and is still read and written.
#[tokio::test]
async fn a_new_file_gets_small_pages_and_an_old_one_keeps_its_own() {
    let page_size = |path: &std::path::Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let (_dir, path, store) = store_waiting(Duration::from_millis(1));
    let (m, c) = executed(0);
    store.record_executed(m, c).await;
    store.close().await.unwrap();
    assert_eq!(page_size(&path), super::PAGE_SIZE);

    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; CREATE TABLE made_before (x INTEGER);")
        .unwrap();
    let store = SqliteStore::open(old.to_str().unwrap()).unwrap();
    let (m, c) = executed(1);
    let id = m.id;
    store.record_executed(m, c).await;
    assert!(store.get(id).await.unwrap().is_some());
    store.close().await.unwrap();
    assert_eq!(page_size(&old), 4096);
    assert_eq!(committed(&old), 1);
}
