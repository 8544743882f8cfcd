//! Builds the application from settings: loads the flows, opens the store,
//! recovers unfinished messages, starts the workers, the reload watcher, retention
//! and the HTTP server. The only place that picks backends and spawns tasks.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::auth::admin::AdminTokens;
use crate::auth::gate::Gate;
use crate::auth::key_cache::KeyVerifier;
use crate::auth::upkeep;
use crate::auth::usage::Usage;
use crate::config::Settings;
use crate::connect::Registry;
use crate::engine::{Executor, Sandbox};
use crate::events::sender::{Sender, SenderSettings};
use crate::flow::{Diagnostic, Loader, SharedCatalog};
use crate::http::tls::Tls;
use crate::http::{self, AppState};
use crate::queue::{Execution, Queue, QueueLimits};
use crate::store::{Store, StoreError};

/// How long a stopping node waits for the attempts it runs (shared store).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How often consumers' counts go to the store (and daily quotas are read
/// back from it): how far a quota may lag across nodes.
const USAGE_FLUSH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("the flow files have {} problem(s)", .0.len())]
    Flows(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the store {store}: {error}")]
    OpenStore { store: String, error: StoreError },
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    queue: Queue,
    usage: Arc<Usage>,
    stop_reload: Arc<AtomicBool>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate().map_err(StartupError::Settings)?;
        // Before anything is opened: a certificate that cannot serve stops the start.
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert.clone(), key.clone())?),
            _ => None,
        };
        let registry = Arc::new(
            Registry::new(
                crate::connect::env::process_env(),
                settings.outbound_policy(),
            )
            .with_subscriptions_allow_http(settings.subscriptions_allow_http),
        );
        let mut loader = Loader::new(settings.flows.clone()).with_registry(registry);
        let report = loader.load();
        if !report.diagnostics.is_empty() {
            return Err(StartupError::Flows(report.diagnostics));
        }
        tracing::info!(triggers = report.catalog.trigger_count(), dir = %settings.flows.display(), "flows loaded");
        let catalog = SharedCatalog::new(report.catalog);

        let store = Store::connect(&settings.store, settings.pg_options())
            .await
            .map_err(|error| StartupError::OpenStore {
                store: crate::store::redact_url(&settings.store),
                error,
            })?;
        let sandbox = Sandbox::new(
            settings
                .sandbox_options()
                .map_err(|e| StartupError::Settings(vec![e.to_string()]))?,
        );
        let execution = execution_for(&store);
        let queue = Queue::start(
            store,
            execution,
            catalog.clone(),
            QueueLimits {
                max_backlog: settings.max_backlog,
                store_timeout: settings.store_timeout,
                tenant_max_running: settings.tenant_max_running(),
            },
            Executor::new(sandbox, settings.flow_limits()),
        )?;
        let recovered = queue.recover().await?;
        if recovered > 0 {
            tracing::info!(messages = recovered, "re-queued unfinished messages");
        }
        queue.start_retention(settings.retention, Duration::from_secs(3600));

        let events = queue.dispatcher().events().clone();
        let hooks = Sender::new(
            &events,
            queue.store().clone(),
            SenderSettings {
                retry: settings.subscriptions_retry.clone(),
                poll: settings.subscriptions_poll,
                timeout: settings.subscriptions_timeout,
                allow_http: settings.subscriptions_allow_http,
                deny_private: settings.subscriptions_deny_private,
            },
        )
        .map_err(|e| StartupError::Settings(vec![crate::domain::chain::describe(&e)]))?;
        hooks.start();

        let reload_errors = Arc::new(AtomicUsize::new(0));
        let problems = Arc::new(RwLock::new(Vec::new()));
        let stop_reload = Arc::new(AtomicBool::new(false));
        spawn_reload(
            loader,
            catalog.clone(),
            settings.reload_interval,
            Reported {
                count: reload_errors.clone(),
                problems: problems.clone(),
                events,
            },
            stop_reload.clone(),
        );

        let listener =
            TcpListener::bind(&settings.listen).map_err(|source| StartupError::Listen {
                addr: settings.listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen {
                addr: settings.listen.clone(),
                source,
            })?;
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.workers
        };
        let usage = Arc::new(Usage::new());
        tokio::spawn(upkeep::run(
            usage.clone(),
            queue.store().clone(),
            catalog.clone(),
            queue.dispatcher().events().clone(),
            USAGE_FLUSH,
            stop_reload.clone(),
        ));
        let (every_tls, tls_on) = (settings.tls_reload_interval, tls.is_some());
        let gate = Gate::new(settings.key_verify_parallel, settings.auth_failure_budget);
        let state = web::Data::new(AppState {
            admin: Arc::new(AdminTokens::new(&settings.admin_tokens, gate.clone())),
            problems,
            keys: Arc::new(KeyVerifier::new(settings.key_cache_size, gate)),
            usage: usage.clone(),
            settings: Arc::new(settings),
            catalog,
            queue: queue.clone(),
            hooks,
            reload_errors,
            consumer_docs: Default::default(),
        });
        let body_timeout = state.settings.body_timeout;
        let tls_config = match &tls {
            Some(tls) => Some(tls.server_config()?),
            None => None,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(http::json_config())
                .wrap_fn(move |mut req, srv| {
                    http::body::limit(&mut req, body_timeout);
                    actix_web::dev::Service::call(srv, req)
                })
                .configure(http::routes)
        })
        .workers(workers)
        .backlog(4096)
        .shutdown_timeout(30);
        let server = match tls_config {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Listen {
            addr: addr.to_string(),
            source,
        })?
        .run();
        if let Some(tls) = tls {
            spawn_tls_reload(tls, every_tls, stop_reload.clone());
        }
        tracing::info!(%addr, https = tls_on, "listening");
        Ok(Self {
            server,
            addr,
            queue,
            usage,
            stop_reload,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The queue (and through it the store) this application runs on.
    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server from elsewhere in the process (as a signal would), for
    /// whoever embeds it: `run_until_stopped` then winds the queue down.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until a signal (SIGINT/SIGTERM) stops the server; then, on a shared
    /// store, hands the messages it claimed and has not started back to the other
    /// nodes and gives running attempts up to `STOP_WAIT`; then waits for the store
    /// to commit what it holds.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.stop_reload.store(true, Ordering::Relaxed);
        self.queue.stop(STOP_WAIT).await;
        if let Err(e) = self.usage.flush(self.queue.store()).await {
            tracing::warn!(error = %crate::domain::chain::describe(&e), "the last consumer counts were not written");
        }
        if let Err(e) = self.queue.store().flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
        result
    }
}

/// The execution model for `store`, picked here once: a store several nodes
/// share (PostgreSQL) has its work claimed under leases; the embedded one
/// (SQLite) runs every message where it was accepted.
pub fn execution_for(store: &Store) -> Execution {
    match store {
        Store::Postgres(pg) => Execution::shared(Arc::new(pg.clone())),
        Store::Sqlite(_) => Execution::embedded(),
    }
}

/// Where the problems of each reload are reported.
struct Reported {
    count: Arc<AtomicUsize>,
    problems: Arc<RwLock<Vec<Diagnostic>>>,
    events: crate::events::Events,
}

impl Reported {
    fn set(&self, problems: &[Diagnostic], flows: &std::path::Path) {
        self.count.store(problems.len(), Ordering::Relaxed);
        if let Ok(mut p) = self.problems.write() {
            *p = problems.to_vec();
        }
        // One event per broken file, however many problems it has.
        let files: std::collections::BTreeSet<&std::path::Path> =
            problems.iter().map(|d| d.file.as_path()).collect();
        for file in files {
            let mut parts = file
                .strip_prefix(flows)
                .ok()
                .into_iter()
                .flat_map(|r| r.components())
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            let tenant = parts
                .next()
                .and_then(|t| crate::domain::TenantName::parse(&t).ok());
            let trigger = parts.next().map(|f| {
                f.trim_end_matches(".yaml")
                    .trim_end_matches(".yml")
                    .to_owned()
            });
            if let Some(t) = tenant {
                self.events.flow_load_failed(&t, trigger.as_deref());
            }
        }
    }
}

/// Polls the flows directory; a change reloads every file, keeping the last good
/// version of broken ones.
fn spawn_reload(
    mut loader: Loader,
    catalog: SharedCatalog,
    every: Duration,
    reported: Reported,
    stop: Arc<AtomicBool>,
) {
    let mut seen = loader.fingerprint();
    let spawned = std::thread::Builder::new()
        .name("flowgate-reload".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let now = loader.fingerprint();
                if now == seen {
                    continue;
                }
                seen = now;
                let report = loader.load();
                for d in &report.diagnostics {
                    tracing::warn!(problem = %d, "flow file problem; keeping the last good version");
                }
                tracing::info!(triggers = report.catalog.trigger_count(), "flows reloaded");
                catalog.set(report.catalog);
                // After the swap: the new catalog decides who hears of the problems.
                reported.set(&report.diagnostics, loader.dir());
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the flow reload thread; hot reload is off");
    }
}

/// Reads the certificate and key files every `every`; a renewal is served to
/// new connections from then on.
fn spawn_tls_reload(mut tls: Tls, every: Duration, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("flowgate-tls-reload".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                tls.reload_if_changed();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the TLS reload thread; certificate renewals need a restart");
    }
}
