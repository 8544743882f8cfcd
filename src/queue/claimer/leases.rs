//! Keeping this node's leases: the heartbeat renews them, and a watch counts
//! those no renewal kept live as lost (see `SharedStore::expire`), so that the work
//! under them stops within one lease even while the store does not answer.

use std::sync::Arc;
use std::time::Duration;

use super::{Claimer, POLL};

impl Claimer {
    /// Renews this node's leases every `lease / 3`. A renewal that fails leaves
    /// them to `watch_leases`; one that finds leases gone stops their work.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let lease = self.store.lease();
        loop {
            tokio::time::sleep(lease / 3).await;
            match tokio::time::timeout(lease, self.store.heartbeat(self.store.now())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::warn!(
                    leases = n,
                    "leases lost (taken over, or lapsed before they were renewed); the work under them was stopped"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "lease heartbeat failed"),
                Err(_) => tracing::warn!("lease heartbeat did not finish within the lease"),
            }
        }
    }

    /// Counts leases that no renewal kept live as lost, as soon as they are:
    /// with the store away, held work stops within one lease.
    pub(super) async fn watch_leases(self: Arc<Self>) {
        let every = (self.store.lease() / 20).clamp(Duration::from_millis(20), POLL);
        loop {
            tokio::time::sleep(every).await;
            let n = self.store.expire(self.store.now());
            if n > 0 {
                tracing::warn!(
                    leases = n,
                    "leases lost: not renewed in time; the work under them was stopped"
                );
            }
        }
    }
}
