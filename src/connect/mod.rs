//! The systems a flow reaches: a tenant's named `connections:` (PostgreSQL pools,
//! and the effects table of `once: true` steps; HTTP endpoints), the shared
//! outbound HTTP client with its policy, `${VAR}`
//! expansion of the fields that may read the server's environment, and the
//! redaction of the secrets those fields hold.
//!
//! Nothing here knows flows or HTTP callers; `flow::compile` builds these objects
//! from `_tenant.yaml` and the engine's `http` and `sql` steps use them.

pub mod address;
pub mod effects;
pub mod env;
pub mod http;
pub mod pgtx;
pub mod pgtypes;
pub mod postgres;
pub mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

pub use env::{EnvLookup, expand};
pub use http::{HttpConnection, Outbound, OutboundPolicy, OutboundRequest, SendError};
pub use pgtx::PgTx;
pub use postgres::{PgConnection, PgOptions};
pub use secrets::Secrets;

/// One named connection of a tenant.
#[derive(Debug, Clone)]
pub enum Connection {
    Postgres(Arc<PgConnection>),
    Http(Arc<HttpConnection>),
}

impl Connection {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Http(_) => "http",
        }
    }
}

/// What compiling flow files needs from the server: the environment for `${VAR}`,
/// the outbound HTTP client, and the PostgreSQL pools already open, which a reload
/// reuses when a connection's settings did not change (so editing one trigger
/// file does not drop every database connection).
pub struct Registry {
    env: EnvLookup,
    outbound: Arc<Outbound>,
    pools: Mutex<HashMap<String, Weak<PgConnection>>>,
    /// `subscriptions_allow_http`: event receivers may be `http://` URLs.
    subscriptions_allow_http: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(env::process_env(), OutboundPolicy::default())
    }
}

impl Registry {
    pub fn new(env: EnvLookup, policy: OutboundPolicy) -> Self {
        Self {
            env,
            outbound: Arc::new(Outbound::new(policy)),
            pools: Mutex::new(HashMap::new()),
            subscriptions_allow_http: false,
        }
    }

    /// The same registry, with `http://` event receivers allowed or not.
    pub fn with_subscriptions_allow_http(mut self, allow: bool) -> Self {
        self.subscriptions_allow_http = allow;
        self
    }

    pub fn subscriptions_allow_http(&self) -> bool {
        self.subscriptions_allow_http
    }

    pub fn env(&self) -> &EnvLookup {
        &self.env
    }

    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// The connection for these options: the open one when it is still in use,
    /// else a new one (whose pool connects on first use).
    pub fn postgres(&self, name: &str, options: PgOptions) -> Arc<PgConnection> {
        let key = options.identity();
        let mut pools = match self.pools.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        pools.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = pools.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let conn = Arc::new(PgConnection::new(name, options));
        pools.insert(key, Arc::downgrade(&conn));
        conn
    }
}
