//! What runs about once a second beside the requests: the consumers' counts
//! flushed to the store ([`Usage::flush`]), `key.expiring` sent for keys that
//! expire within seven days, and, once an hour, counts and notices past
//! keeping deleted.
//!
//! A `key.expiring` is sent once per key and expiry: the store records it
//! (one insert that only the first node, or the first run after a restart,
//! makes) before the event is emitted. A tenant none of whose subscriptions
//! wants the event records nothing, so a subscription added later still
//! hears of a key that expires after it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::domain::{DAY_MICROS, Micros, now_micros, utc_day};
use crate::events::Events;
use crate::flow::SharedCatalog;
use crate::store::Store;

use super::usage::Usage;

/// How long before its expiry a key is announced.
pub const EXPIRING_WITHIN: Micros = 7 * DAY_MICROS;

/// Days of counts kept in the store (the keys page shows today's).
const KEEP_DAYS: i64 = 35;

/// Flushes between two purges (about an hour).
const PURGE_EVERY: u64 = 3600;

/// The keys whose `key.expiring` this node has seen recorded: (tenant, key
/// id, expiry). The store decides; this only spares it the question.
#[derive(Default)]
pub struct Notices {
    recorded: HashSet<(String, String, Micros)>,
}

impl Notices {
    /// Emits `key.expiring` for every key of a tenant that wants it, expiring
    /// after `now` and within [`EXPIRING_WITHIN`], unless recorded already.
    pub async fn scan(
        &mut self,
        catalog: &SharedCatalog,
        store: &Store,
        events: &Events,
        now: Micros,
    ) {
        let snapshot = catalog.get();
        for entry in snapshot.tenants() {
            let tenant = &entry.tenant;
            if !events.wants_key_expiring(&tenant.name) {
                continue;
            }
            for key in tenant.key_ids.values() {
                let Some(at) = key.expires else { continue };
                let expires = (at.unix_timestamp_nanos() / 1000) as Micros;
                if expires <= now || expires - now > EXPIRING_WITHIN {
                    continue;
                }
                let seen = (tenant.name.as_str().to_owned(), key.id.clone(), expires);
                if self.recorded.contains(&seen) {
                    continue;
                }
                let event = Events::key_expiring(&tenant.name, &key.label, &key.id, expires);
                match store
                    .claim_key_notice(&seen.0, &seen.1, expires, now, event)
                    .await
                {
                    Ok(first) => {
                        if first {
                            events.written();
                        }
                        self.recorded.insert(seen);
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::domain::chain::describe(&e), tenant = %tenant.name, key_id = %key.id, "cannot record key.expiring; trying again");
                        return;
                    }
                }
            }
        }
        // Past their expiry they are never due again.
        self.recorded.retain(|(_, _, at)| *at > now);
    }
}

/// Runs until `stop` is set: every `every`, a flush, the expiry scan, and
/// now and then a purge. A failed flush is logged and its counts kept for
/// the next.
pub async fn run(
    usage: Arc<Usage>,
    store: Store,
    catalog: SharedCatalog,
    events: Events,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut notices = Notices::default();
    let mut ticks = 0u64;
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match usage.flush(&store).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("consumer counts are written again");
            }
            Ok(()) => {}
            Err(e) => {
                // Said once per outage; requests go on, counts wait.
                if !failing {
                    tracing::warn!(error = %crate::domain::chain::describe(&e), "cannot write consumer counts; kept for the next try");
                }
                failing = true;
            }
        }
        let now = now_micros();
        notices.scan(&catalog, &store, &events, now).await;
        ticks += 1;
        if ticks.is_multiple_of(PURGE_EVERY)
            && let Err(e) = store.purge_usage(utc_day(now) - KEEP_DAYS, now).await
        {
            tracing::warn!(error = %crate::domain::chain::describe(&e), "cannot purge old consumer counts");
        }
    }
}
