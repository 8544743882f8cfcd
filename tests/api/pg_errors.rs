//! PostgreSQL's errors told apart by SQLSTATE, against the real server: a
//! statement the database refuses (a unique violation, a missing table) is a
//! bug, answered 500 without `Retry-After`; a database busy or restarting (a
//! lock not had in time, a terminated session, a serialization failure) is an
//! outage, answered 503 with it.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::NoTls;

use flowgate::domain::now_micros;
use flowgate::store::{PgOptions, Store, StoreError};

use crate::helpers::{ERP_KEY, TestApp};
use crate::pg::{query, run, schema};
use crate::store_contract::message;

fn options(lock_timeout: Duration) -> PgOptions {
    PgOptions {
        pool_size: 2,
        lock_timeout,
        ..PgOptions::default()
    }
}

fn is_bug(e: &StoreError) -> bool {
    matches!(e, StoreError::Statement(_))
}

/// Makes every insert into `messages` fail with `sqlstate`, as a statement
/// the database refuses for that reason would.
fn refuse_inserts(sqlstate: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '{sqlstate}'; END $$;
         DROP TRIGGER IF EXISTS refuse ON messages;
         CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_is_a_bug_and_a_busy_or_terminated_database_an_outage() {
    let Some(pg) = schema("pg_errors").await else {
        return;
    };
    let store = Store::connect(&pg.url, options(Duration::from_millis(200)))
        .await
        .unwrap();

    // A unique violation (23505) fails the same way every time: a bug.
    run(
        &pg.url,
        "CREATE UNIQUE INDEX one_per_tenant ON messages (tenant)",
    )
    .await
    .unwrap();
    let first = message(None, None, now_micros());
    let id = first.id;
    store.enqueue(&[first]).await.unwrap();
    let e = store
        .enqueue(&[message(None, None, now_micros())])
        .await
        .unwrap_err();
    assert!(is_bug(&e) && e.to_string().contains("23505"), "{e}");
    run(&pg.url, "DROP INDEX one_per_tenant").await.unwrap();

    // A lock not had within lock_timeout (55P03): busy, come back later.
    let (locker, conn) = tokio_postgres::connect(&pg.url, NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let e = store.get(id).await.unwrap_err();
    assert!(e.is_unavailable() && e.to_string().contains("55P03"), "{e}");

    // A session terminated by an operator (57P01) while its statement waits.
    let app = format!("fgterm{}", std::process::id());
    let patient = Store::connect(
        &format!("{}&application_name={app}", pg.url),
        options(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let waiting = tokio::spawn(async move { patient.get(id).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ended = query(
            &pg.url,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = '{app}' AND wait_event_type = 'Lock'"
            ),
        )
        .await;
        if !ended.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store's statement never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = waiting.await.unwrap().unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    drop(locker);
    let _ = driver.await;

    // A serialization failure (40001): the transaction may simply run again.
    run(&pg.url, &refuse_inserts("40001")).await.unwrap();
    let e = store
        .enqueue(&[message(None, None, now_micros())])
        .await
        .unwrap_err();
    assert!(e.is_unavailable() && e.to_string().contains("40001"), "{e}");
    run(&pg.url, "DROP TRIGGER refuse ON messages")
        .await
        .unwrap();

    // A table that is not there (42P01): a bug.
    run(&pg.url, "DROP TABLE lanes CASCADE").await.unwrap();
    let e = store.purge(now_micros()).await.unwrap_err();
    assert!(is_bug(&e) && e.to_string().contains("42P01"), "{e}");
    store.close().await.unwrap();
}

/// Over HTTP: a bug answers 500 without `Retry-After` (a retry fails the same
/// way), an outage 503 with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_answers_500_without_retry_after_and_an_outage_503_with_it() {
    let Some(pg) = schema("pg_errors_http").await else {
        return;
    };
    let url = pg.url.clone();
    let app = TestApp::spawn_with(|_| {}, move |s| s.store = url).await;
    let body = json!({"name": "Ann"});
    let post = || app.post_json("/acme/CreateCustomerRecord", Some(ERP_KEY), &body);

    run(&pg.url, &refuse_inserts("23514")).await.unwrap();
    let res = post().await;
    assert_eq!(res.status(), 500);
    assert!(!res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "internal", "{body}");

    run(&pg.url, &refuse_inserts("40P01")).await.unwrap();
    let res = post().await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));

    run(&pg.url, "DROP TRIGGER refuse ON messages")
        .await
        .unwrap();
    assert_eq!(post().await.status(), 202);
}
