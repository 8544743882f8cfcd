//! PostgreSQL for tests: each test gets a schema of its own in the database named
//! by `FLOWGATE_TEST_DATABASE_URL`, dropped afterwards. Without that variable (or
//! with the database away) PostgreSQL tests are skipped with a notice, unless
//! `CI=true`, where they fail.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A schema for one test; dropped with it.
pub struct PgSchema {
    pub url: String,
    base: String,
    name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A fresh schema, or `None` (after a notice) when PostgreSQL is not available here.
pub async fn schema(test: &str) -> Option<PgSchema> {
    let Ok(base) = std::env::var("FLOWGATE_TEST_DATABASE_URL") else {
        assert!(!ci(), "CI=true but FLOWGATE_TEST_DATABASE_URL is not set");
        eprintln!("skipping the PostgreSQL part of {test}: FLOWGATE_TEST_DATABASE_URL is not set");
        return None;
    };
    let name = format!(
        "fg_{}_{}_{}",
        test.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect::<String>(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .to_lowercase();
    if let Err(e) = run(
        &base,
        &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
    )
    .await
    {
        assert!(
            !ci(),
            "CI=true but PostgreSQL at {base} is unreachable: {e}"
        );
        eprintln!("skipping the PostgreSQL part of {test}: {e}");
        return None;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(PgSchema {
        url: format!("{base}{sep}options=-csearch_path%3D{name}"),
        base,
        name,
    })
}

pub async fn run(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let r = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    r
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // A runtime of its own: Drop may run inside (or outside) a test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(run(&base, &format!("DROP SCHEMA IF EXISTS {name} CASCADE")));
            }
        })
        .join();
    }
}

/// Rows of one query, in `url`'s schema.
pub async fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    let driver = tokio::spawn(conn);
    let rows = client.query(sql, &[]).await.expect("query runs");
    drop(client);
    let _ = driver.await;
    rows
}
