//! PostgreSQL for tests: each test gets a schema of its own in the database named
//! by `FLOWGATE_TEST_DATABASE_URL` (or the local server at its default URL when
//! that is unset), dropped afterwards. With no database, PostgreSQL tests are
//! skipped and counted (`skips`), unless `CI=true`, where they fail.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A schema for one test; dropped with it.
pub struct PgSchema {
    pub url: String,
    base: String,
    name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub use crate::skips::ci;

/// Used when `FLOWGATE_TEST_DATABASE_URL` is not set, if a server answers there.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database: `FLOWGATE_TEST_DATABASE_URL`, or the local server at
/// [`DEFAULT_URL`] when that variable is unset and the server answers; `None`
/// (the part counted as skipped) otherwise, a failure under `CI=true`.
pub fn database_url() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    let found =
        FOUND.get_or_init(|| choose(std::env::var("FLOWGATE_TEST_DATABASE_URL").ok(), answers));
    match found {
        Ok(url) => Some(url.clone()),
        Err(why) => {
            assert!(!ci(), "CI=true but {why}");
            crate::skips::skipped("PostgreSQL", why.clone());
            None
        }
    }
}

/// The URL named, else [`DEFAULT_URL`] if `probe` finds a server there, else why not.
fn choose(
    named: Option<String>,
    probe: impl FnOnce(&str) -> Result<(), String>,
) -> Result<String, String> {
    match named {
        Some(url) => Ok(url),
        None => match probe(DEFAULT_URL) {
            Ok(()) => Ok(DEFAULT_URL.to_owned()),
            Err(e) => Err(format!(
                "no database at {DEFAULT_URL} ({e}; set FLOWGATE_TEST_DATABASE_URL)"
            )),
        },
    }
}

#[test]
fn the_local_server_is_used_when_no_database_is_named() {
    let named = Some("postgres://elsewhere/db".to_owned());
    assert_eq!(
        choose(named, |_| panic!("not probed")).as_deref(),
        Ok("postgres://elsewhere/db")
    );
    assert_eq!(choose(None, |_| Ok(())).as_deref(), Ok(DEFAULT_URL));
    assert_eq!(
        choose(None, |url| Err(format!("{url} refused"))),
        Err(format!(
            "no database at {DEFAULT_URL} ({DEFAULT_URL} refused; set FLOWGATE_TEST_DATABASE_URL)"
        ))
    );
}

/// Whether a PostgreSQL server accepts a session at `url` (on a thread of its
/// own: callers may be inside a runtime, or not).
fn answers(url: &str) -> Result<(), String> {
    let url = format!("{url}?connect_timeout=2");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(run(&url, "SELECT 1"))
            .map_err(|e| flowgate::domain::chain::describe(&e))
    })
    .join()
    .unwrap_or_else(|_| Err("the probe panicked".into()))
}

/// A fresh schema, or `None` (after a notice) when PostgreSQL is not available here.
pub async fn schema(test: &str) -> Option<PgSchema> {
    let base = database_url()?;
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
        crate::skips::skipped(
            "PostgreSQL",
            format!(
                "{base} is unreachable: {}",
                flowgate::domain::chain::describe(&e)
            ),
        );
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
