//! Opening the shared store: the pool and its session settings, the
//! migrations (under an advisory lock, one node at a time) and the database's
//! clock, which leases are measured on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Hook, HookError};
use tokio::sync::mpsc;

use crate::connect::postgres::pool_builder;
use crate::domain::Micros;
use crate::store::types::StoreError;

use super::{PgOptions, PgStore, db, writer};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "messages",
        include_str!("../../../migrations/postgres/0001_messages.sql"),
    ),
    (
        2,
        "fail_status",
        include_str!("../../../migrations/postgres/0002_fail_status.sql"),
    ),
    (
        3,
        "admin",
        include_str!("../../../migrations/postgres/0003_admin.sql"),
    ),
    (
        4,
        "no_held_index",
        include_str!("../../../migrations/postgres/0004_no_held_index.sql"),
    ),
    (
        5,
        "lz4",
        include_str!("../../../migrations/postgres/0005_lz4.sql"),
    ),
    (
        6,
        "no_trigger_index",
        include_str!("../../../migrations/postgres/0006_no_trigger_index.sql"),
    ),
    (
        7,
        "no_finished_index",
        include_str!("../../../migrations/postgres/0007_no_finished_index.sql"),
    ),
    (
        8,
        "no_seq_index",
        include_str!("../../../migrations/postgres/0008_no_seq_index.sql"),
    ),
    (
        9,
        "no_running_status_index",
        include_str!("../../../migrations/postgres/0009_no_running_status_index.sql"),
    ),
    (
        10,
        "lane_epochs",
        include_str!("../../../migrations/postgres/0010_lane_epochs.sql"),
    ),
    (
        11,
        "consumer_usage",
        include_str!("../../../migrations/postgres/0011_consumer_usage.sql"),
    ),
    (
        12,
        "consumers",
        include_str!("../../../migrations/postgres/0012_consumers.sql"),
    ),
    (
        13,
        "subscriptions",
        include_str!("../../../migrations/postgres/0013_subscriptions.sql"),
    ),
    (
        14,
        "events",
        include_str!("../../../migrations/postgres/0014_events.sql"),
    ),
];

/// Set on each of the store's connections as it is made (with the lock and
/// idle-in-transaction timeouts, see `session_settings`). The store's statements
/// are each written to be served by an index (the query plan tests check them);
/// these rule out the two kinds of plan that pass those indexes by. The partial
/// indexes of unfinished messages keep an entry for every message finished since
/// the last vacuum (on a large table, a day's traffic or more): a bitmap scan
/// visits each such entry's row on every claim and backlog count, while a plain
/// index scan marks the dead ones and skips them from then on. And statistics
/// that lag the queue (a few per cent unfinished, no page yet all-visible) make a
/// whole-table scan look cheaper than the index for the backlog count. Set by
/// SQL rather than as startup options, which a connection pooler may refuse.
const SESSION_SETTINGS: &str = "SET enable_bitmapscan = off; SET enable_seqscan = off";

/// Any key shared by every flowgate node: serialises migrations.
const MIGRATION_LOCK: i64 = 0x666c_6f77_6761_7465;

/// Every setting made on a store connection as it is made.
fn session_settings(options: &PgOptions) -> String {
    format!(
        "{SESSION_SETTINGS}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        options.lock_timeout.as_millis().max(1),
        options.idle_in_transaction_timeout.as_millis().max(1),
    )
}

/// Clock differences smaller than this are not followed (see `sync_clock`).
pub(super) const CLOCK_TOLERANCE: Micros = 250_000;

/// The database's clock minus ours, from our clock just before and just after it
/// was read: the reading is taken to be from halfway between.
fn clock_offset(before: Micros, database: Micros, after: Micros) -> Micros {
    database - (before + (after - before) / 2)
}

/// How long a store connection may go without the server acknowledging what was
/// sent to it: generous beside `store_timeout`, short beside TCP's own ~15 minutes.
fn tcp_user_timeout(store_timeout: Duration) -> Duration {
    (store_timeout * 5).max(Duration::from_secs(10))
}

impl PgStore {
    /// Connects, runs the migrations under an advisory lock and starts the writer.
    /// Call from inside the runtime that will run the store's tasks.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let (mut config, tls) =
            crate::pgtls::parse(url).map_err(|e| StoreError::Config(format!("store URL: {e}")))?;
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        // A database cut off without the connection breaking (a lost route, a host
        // gone) leaves sent data unacknowledged: past this the kernel closes the
        // connection, where it would otherwise retransmit for a quarter of an hour
        // with the connection's statements waiting. Unanswered keepalive probes
        // count as well, so idle connections (the listener) notice too.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(tcp_user_timeout(options.connect_timeout));
        }
        // Operators may name each node's connections in the URL.
        if config.get_application_name().is_none() {
            config.application_name("flowgate");
        }
        let mut listen = config.clone();
        listen.application_name(format!(
            "{}-listen",
            config.get_application_name().unwrap_or_default()
        ));
        let listener = Arc::new((listen, tls.clone()));
        // The node's name in leases (`holder`): its connections' application name
        // (operators may name each node in the URL), made unique per process.
        let node: Arc<str> = format!(
            "{}-{}",
            config.get_application_name().unwrap_or("flowgate"),
            uuid::Uuid::now_v7().simple()
        )
        .into();
        let settings: Arc<str> = session_settings(&options).into();
        let pool = pool_builder(config, tls, options.pool_size, options.connect_timeout)
            .post_create(Hook::async_fn(move |client, _| {
                let settings = settings.clone();
                Box::pin(async move {
                    client
                        .batch_execute(&settings)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?;
        let (tx, rx) = mpsc::channel(writer::CHANNEL);
        let store = Self {
            pool,
            listener,
            rt: tokio::runtime::Handle::current(),
            node,
            lease: options.lease,
            timeout: options.connect_timeout,
            writer: tx,
            closed: Arc::new(AtomicBool::new(false)),
            held: Arc::default(),
            clock_offset: Arc::default(),
            local_skew: Arc::default(),
        };
        store.migrate().await?;
        store.sync_clock().await?;
        tokio::spawn(writer::run(store.clone(), rx));
        Ok(store)
    }

    /// Measures how far the database's clock is from this machine's (at start and
    /// now and then, so a clock that is stepped is followed). Three readings, the
    /// quickest one counts. A difference below `CLOCK_TOLERANCE` is left alone:
    /// leases last seconds, and following a few milliseconds of measuring noise
    /// would only set this node's records apart from its neighbours'.
    pub async fn sync_clock(&self) -> Result<(), StoreError> {
        let measured = self
            .with(|store, client| async move {
                let stmt = client
                    .prepare_cached(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
                    )
                    .await
                    .map_err(db)?;
                let mut best: Option<(Micros, Micros)> = None;
                for _ in 0..3 {
                    let before = store.local_now();
                    let row = client.query_one(&stmt, &[]).await.map_err(db)?;
                    let after = store.local_now();
                    let reading = (after - before, clock_offset(before, row.get(0), after));
                    if best.is_none_or(|b| reading.0 < b.0) {
                        best = Some(reading);
                    }
                }
                Ok(best.map_or(0, |b| b.1))
            })
            .await?;
        let current = self.clock_offset.load(Ordering::Relaxed);
        let followed = if measured.abs() < CLOCK_TOLERANCE {
            0
        } else {
            measured
        };
        if (followed - current).abs() >= CLOCK_TOLERANCE {
            if followed != 0 {
                tracing::warn!(
                    offset_ms = followed / 1000,
                    "this machine's clock is off from the database's; leases follow the database's"
                );
            }
            self.clock_offset.store(followed, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.with(|_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Another node's migration may take a while (an index rebuilt on a
            // large table): wait for it, and for running nodes' row locks.
            tx.batch_execute("SET LOCAL lock_timeout = 0")
                .await
                .map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(db)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await
            .map_err(db)?;
            let applied: Vec<(i64, String)> = tx
                .query(
                    "SELECT version, name FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            crate::store::check_migrations_known(&applied, MIGRATIONS)?;
            for (version, name, sql) in MIGRATIONS {
                if applied.iter().any(|(v, _)| v == version) {
                    continue;
                }
                tx.batch_execute(sql).await.map_err(|e| {
                    StoreError::Config(format!("migration {version} ({name}): {e}"))
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    &[version, name, &crate::domain::now_micros()],
                )
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })
        .await
    }
}
