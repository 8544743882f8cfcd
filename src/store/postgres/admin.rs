//! The operators' view on PostgreSQL: log history, counts, lanes, replays and
//! event deliveries (the methods `Store` asks of every backend; see store/admin.rs).

use crate::domain::{MessageId, MessageView, Micros, TenantName};
use crate::store::StoreError;
use crate::store::admin::{
    BlockedLane, DeliveryAttempt, DeliveryStatus, DeliveryView, MessageQuery, MessageSummary,
    NewDelivery, Release, StatusCount,
};

use super::PgStore;

fn pending() -> StoreError {
    StoreError::Unavailable(
        "the operators' view is not yet available on the PostgreSQL store".into(),
    )
}

impl PgStore {
    pub async fn list_messages(&self, _q: MessageQuery) -> Result<Vec<MessageSummary>, StoreError> {
        Err(pending())
    }

    pub async fn count_messages(&self, _q: MessageQuery) -> Result<u64, StoreError> {
        Err(pending())
    }

    pub async fn status_counts(
        &self,
        _tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        Err(pending())
    }

    pub async fn blocked_lanes(
        &self,
        _tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<BlockedLane>, StoreError> {
        Err(pending())
    }

    pub async fn release_lane(&self, _id: MessageId, _how: Release) -> Result<bool, StoreError> {
        Err(pending())
    }

    pub async fn link_replays(
        &self,
        _links: Vec<(MessageId, MessageId)>,
    ) -> Result<(), StoreError> {
        Err(pending())
    }

    pub async fn message_detail(
        &self,
        _id: MessageId,
    ) -> Result<Option<(MessageView, Option<MessageId>)>, StoreError> {
        Err(pending())
    }

    pub async fn add_deliveries(&self, _batch: Vec<NewDelivery>) -> Result<(), StoreError> {
        Err(pending())
    }

    pub async fn claim_deliveries(
        &self,
        _now: Micros,
        _lease_until: Micros,
        _limit: u32,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        Err(pending())
    }

    pub async fn record_delivery_attempt(
        &self,
        _id: MessageId,
        _attempt: DeliveryAttempt,
        _status: DeliveryStatus,
        _next_at: Micros,
    ) -> Result<(), StoreError> {
        Err(pending())
    }

    pub async fn list_deliveries(
        &self,
        _tenant: TenantName,
        _subscription: Option<String>,
        _before: Option<MessageId>,
        _limit: u32,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        Err(pending())
    }

    pub async fn get_delivery(&self, _id: MessageId) -> Result<Option<DeliveryView>, StoreError> {
        Err(pending())
    }

    pub async fn redeliver(&self, _id: MessageId, _now: Micros) -> Result<bool, StoreError> {
        Err(pending())
    }

    pub async fn purge_deliveries(&self, _before: Micros) -> Result<u64, StoreError> {
        Err(pending())
    }

    pub async fn explain_list(&self, _q: MessageQuery) -> Result<Vec<String>, StoreError> {
        Err(pending())
    }
}
