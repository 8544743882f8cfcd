//! Managed event subscriptions: list (those of `_tenant.yaml` too, read-only
//! here), create, show, change, delete, rotate the secret, send a test ping.
//! Switching a subscription on sends it a `ping` at once. Every change is read
//! back by this node before it answers, and by the others within a second
//! (`events::Subscribers`).

use std::sync::Arc;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Deserializer};

use crate::domain::{
    self, EventPattern, Include, MessageId, Subscription, SubscriptionError, SubscriptionSource,
    TriggerName,
};

use super::answers::{
    DeletedSubscription, Errors, RotatedSecret, SubscriptionList, SubscriptionView,
    TestedSubscription, ms,
};
use super::extract::{Admin, Ask, Found, Lookup, Operate, Operator};
use super::{ApiError, AppState, Json, bad};

/// A subscription the path's `{id}` names, of a tenant the token sees.
pub struct Sub(Arc<Subscription>);

impl Lookup for Sub {
    const WHAT: &'static str = "subscription";

    async fn find(ask: Ask<'_>) -> Result<Option<Self>, ApiError> {
        let subscribers = ask.state.queue.dispatcher().events().subscribers();
        // What another node changed within the last second is read first, so
        // a change never starts from a copy older than the store's.
        subscribers.refresh().await?;
        Ok(subscribers.by_id(ask.id.as_uuid()).map(Sub))
    }

    fn tenant(&self) -> &str {
        self.0.tenant.as_str()
    }
}

/// With `subscriptions_deny_private` (the default), a receiver written as a
/// loopback, private or other non-public address is refused when it is given,
/// rather than failing every attempt later (a name is checked as it resolves,
/// at each attempt).
fn public_receiver(state: &AppState, url: &str) -> Result<(), ApiError> {
    if !state.settings.subscriptions_deny_private {
        return Ok(());
    }
    let policy = crate::connect::http::OutboundPolicy {
        allow_hosts: Vec::new(),
        deny_private: true,
    };
    let refused = match reqwest::Url::parse(url) {
        Ok(u) if u.host_str() == Some("localhost") => {
            Some("`localhost` is this machine".to_owned())
        }
        Ok(u) => policy.check(&u).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    match refused {
        None => Ok(()),
        Some(why) => Err(bad(
            "invalid_field",
            format!("`url`: {why} (the setting subscriptions_deny_private)"),
        )),
    }
}

/// 409 for a subscription of `_tenant.yaml`.
fn editable(s: &Subscription) -> Result<(), ApiError> {
    match s.source {
        SubscriptionSource::Api => Ok(()),
        SubscriptionSource::File => Err(ApiError::ConflictCode {
            code: "subscription_in_file",
            why: format!(
                "subscription `{}` is declared in {}/_tenant.yaml: change it there",
                s.name, s.tenant
            ),
        }),
    }
}

/// 400 naming the field.
fn invalid(e: SubscriptionError) -> ApiError {
    bad("invalid_field", format!("`{}`: {e}", e.field()))
}

/// `auth` of a request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthInput {
    None,
    Basic { username: String, password: String },
}

/// `POST /subscriptions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    tenant: String,
    name: String,
    description: Option<String>,
    url: String,
    /// Event names, or `prefix.*`.
    events: Vec<String>,
    /// Only events of these triggers.
    triggers: Option<Vec<String>>,
    auth: Option<AuthInput>,
    /// `ids` (default) or `full`.
    include: Option<String>,
    /// Waits between attempts, like `["5s", "30s", "2m"]`; default the server's.
    retry: Option<Vec<String>>,
    /// Default false. Switching on sends a `ping`.
    enabled: Option<bool>,
    /// The signing secret; made up when not given (and answered this once).
    secret: Option<String>,
}

/// Absent: unchanged; `null`: cleared.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `PATCH /subscriptions/{id}`: the fields to change; the others stay.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionChange {
    name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `null`: every trigger.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    triggers: Option<Option<Vec<String>>>,
    auth: Option<AuthInput>,
    include: Option<String>,
    /// `null`: the server's schedule.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    retry: Option<Option<Vec<String>>>,
    enabled: Option<bool>,
}

fn triggers(names: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(names) = names else { return Ok(None) };
    for t in &names {
        TriggerName::parse(t).map_err(|_| invalid(SubscriptionError::Trigger(t.clone())))?;
    }
    Ok(Some(names))
}

fn events(names: &[String]) -> Result<Vec<EventPattern>, ApiError> {
    domain::parse_events(names.iter().map(String::as_str)).map_err(invalid)
}

fn retry(waits: Option<Vec<String>>) -> Result<Option<Vec<std::time::Duration>>, ApiError> {
    waits
        .map(|r| domain::parse_retry(r.iter().map(String::as_str)))
        .transpose()
        .map_err(invalid)
}

fn description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.is_empty() => Ok(None),
        Some(d) => {
            domain::check_description(&d).map_err(invalid)?;
            Ok(Some(d))
        }
        None => Ok(None),
    }
}

fn auth(a: Option<AuthInput>) -> Option<(String, String)> {
    match a {
        Some(AuthInput::Basic { username, password }) => Some((username, password)),
        Some(AuthInput::None) | None => None,
    }
}

/// A name no other subscription of the tenant has (files' included).
fn name_free(state: &AppState, s: &Subscription) -> Result<(), ApiError> {
    let taken = state
        .queue
        .dispatcher()
        .events()
        .subscribers()
        .of_tenant(s.tenant.as_str())
        .iter()
        .any(|o| o.name == s.name && o.id != s.id);
    if taken {
        return Err(name_taken(s));
    }
    Ok(())
}

/// At most [`domain::MAX_API_SUBSCRIPTIONS`] subscriptions a tenant makes through the API: every
/// matching event is fanned out to each, so one tenant may not make thousands.
async fn room_for_one_more(state: &AppState, s: &Subscription) -> Result<(), ApiError> {
    let subscribers = state.queue.dispatcher().events().subscribers();
    subscribers.refresh().await?;
    let made = subscribers
        .of_tenant(s.tenant.as_str())
        .iter()
        .filter(|o| o.source == SubscriptionSource::Api)
        .count();
    if made >= domain::MAX_API_SUBSCRIPTIONS {
        return Err(ApiError::ConflictCode {
            code: "too_many_subscriptions",
            why: format!(
                "tenant `{}` has {made} subscriptions made through the API, the most there may be; delete one first",
                s.tenant
            ),
        });
    }
    Ok(())
}

fn name_taken(s: &Subscription) -> ApiError {
    ApiError::ConflictCode {
        code: "subscription_exists",
        why: format!(
            "tenant `{}` has a subscription named `{}` already",
            s.tenant, s.name
        ),
    }
}

/// Reads the stored subscriptions again, so this node's next event sees the
/// change; then a `ping` if `sub` was switched on.
async fn changed(state: &AppState, sub: &Subscription, switched_on: bool) -> Result<(), ApiError> {
    let events = state.queue.dispatcher().events();
    events.subscribers().refresh().await?;
    if switched_on {
        events.ping(sub).await?;
    }
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Tenant name; every tenant the token sees when absent.
    tenant: Option<String>,
}

/// Event subscriptions, those of `_tenant.yaml` (`source: file`) first.
#[utoipa::path(
    operation_id = "list_subscriptions",
    params(ListQuery),
    responses((status = 200, description = "The subscriptions", body = SubscriptionList))
)]
#[get("/subscriptions")]
pub async fn list(
    q: web::Query<ListQuery>,
    who: Admin,
) -> Result<Json<SubscriptionList>, ApiError> {
    let state = &who.state;
    let subscribers = state.queue.dispatcher().events().subscribers();
    let tenants = match &q.tenant {
        Some(t) => vec![who.tenant(t)?.to_string()],
        None => subscribers
            .tenants()
            .into_iter()
            .filter(|t| who.sees(t))
            .collect(),
    };
    let subscriptions = tenants
        .iter()
        .flat_map(|t| subscribers.of_tenant(t))
        .map(|s| SubscriptionView::new(&s, None))
        .collect();
    Ok(Json(SubscriptionList { subscriptions }))
}

/// Makes a subscription (off unless `enabled`); answers its secret this once.
#[utoipa::path(
    operation_id = "create_subscription",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Made, with its secret", body = SubscriptionView),
        (status = 400, description = "A field is wrong (named)", body = Errors),
        (status = 409, description = "The name is taken (`subscription_exists`), or the tenant has the most subscriptions there may be (`too_many_subscriptions`)", body = Errors),
    )
)]
#[post("/subscriptions")]
pub async fn create(
    body: web::Json<NewSubscription>,
    who: Operator,
) -> Result<HttpResponse, ApiError> {
    let state = &who.state;
    let b = body.into_inner();
    let tenant = who.tenant(&b.tenant)?;
    domain::check_name(&b.name).map_err(invalid)?;
    domain::check_url(&b.url, state.settings.subscriptions_allow_http).map_err(invalid)?;
    public_receiver(state, &b.url)?;
    let include = match &b.include {
        Some(i) => Include::parse(i).map_err(invalid)?,
        None => Include::Ids,
    };
    let secret = b
        .secret
        .filter(|s| !s.is_empty())
        .unwrap_or_else(domain::new_secret);
    let now = state.queue.store().now();
    let sub = Subscription {
        id: MessageId::new().as_uuid(),
        tenant,
        name: b.name,
        description: description(b.description)?,
        url: b.url,
        events: events(&b.events)?,
        triggers: triggers(b.triggers)?,
        basic_auth: auth(b.auth),
        secret: Some(secret.clone()),
        include,
        retry: retry(b.retry)?,
        enabled: b.enabled.unwrap_or(false),
        source: SubscriptionSource::Api,
        created_at: now,
        updated_at: now,
    };
    room_for_one_more(state, &sub).await?;
    name_free(state, &sub)?;
    if !state.queue.store().add_subscription(&sub).await? {
        return Err(name_taken(&sub));
    }
    changed(state, &sub, sub.enabled).await?;
    Ok(HttpResponse::Created().json(SubscriptionView::new(&sub, Some(secret))))
}

/// One subscription (never its secret or password).
#[utoipa::path(
    operation_id = "get_subscription",
    responses((status = 200, description = "The subscription", body = SubscriptionView))
)]
#[get("/subscriptions/{id}")]
pub async fn detail(found: Found<Sub>) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(SubscriptionView::new(&found.it.0, None)))
}

/// Changes the fields given. Switching `enabled` on sends a `ping`.
#[utoipa::path(
    operation_id = "update_subscription",
    request_body = SubscriptionChange,
    responses(
        (status = 200, description = "Changed", body = SubscriptionView),
        (status = 400, description = "A field is wrong (named)", body = Errors),
        (status = 409, description = "Declared in _tenant.yaml", body = Errors),
    )
)]
#[patch("/subscriptions/{id}")]
pub async fn update(
    body: web::Json<SubscriptionChange>,
    found: Operate<Sub>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let Found { who, it: Sub(old) } = found;
    let state = &who.state;
    editable(&old)?;
    let c = body.into_inner();
    let mut sub = (*old).clone();
    if let Some(name) = c.name
        && name != sub.name
    {
        // Deliveries (pending ones and the log) are filed under the name.
        return Err(bad(
            "invalid_field",
            format!(
                "`name`: a subscription's name cannot change (its deliveries are filed under `{}`); make a new subscription and delete this one",
                sub.name
            ),
        ));
    }
    if let Some(d) = c.description {
        sub.description = description(d)?;
    }
    if let Some(url) = c.url {
        domain::check_url(&url, state.settings.subscriptions_allow_http).map_err(invalid)?;
        public_receiver(state, &url)?;
        sub.url = url;
    }
    if let Some(e) = c.events {
        sub.events = events(&e)?;
    }
    if let Some(t) = c.triggers {
        sub.triggers = triggers(t)?;
    }
    if let Some(a) = c.auth {
        sub.basic_auth = auth(Some(a));
    }
    if let Some(i) = c.include {
        sub.include = Include::parse(&i).map_err(invalid)?;
    }
    if let Some(r) = c.retry {
        sub.retry = retry(r)?;
    }
    if let Some(on) = c.enabled {
        sub.enabled = on;
    }
    sub.updated_at = state.queue.store().now();
    if !state.queue.store().update_subscription(&sub).await? {
        return Err(ApiError::NotFound(format!("no subscription `{}`", sub.id)));
    }
    changed(state, &sub, sub.enabled && !old.enabled).await?;
    Ok(Json(SubscriptionView::new(&sub, None)))
}

/// Deletes a subscription; its delivery log stays until retention.
#[utoipa::path(
    operation_id = "delete_subscription",
    responses(
        (status = 200, description = "Deleted", body = DeletedSubscription),
        (status = 409, description = "Declared in _tenant.yaml", body = Errors),
    )
)]
#[delete("/subscriptions/{id}")]
pub async fn remove(found: Operate<Sub>) -> Result<Json<DeletedSubscription>, ApiError> {
    let Found { who, it: Sub(sub) } = found;
    let state = &who.state;
    editable(&sub)?;
    let id = MessageId::from_uuid(sub.id);
    if !state.queue.store().delete_subscription(id).await? {
        return Err(ApiError::NotFound(format!("no subscription `{}`", sub.id)));
    }
    changed(state, &sub, false).await?;
    Ok(Json(DeletedSubscription {
        subscription_id: sub.id.to_string(),
        deleted: true,
    }))
}

/// A new signing secret, answered this once; deliveries are signed with it
/// from now on.
#[utoipa::path(
    operation_id = "rotate_subscription_secret",
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 409, description = "Declared in _tenant.yaml", body = Errors),
    )
)]
#[post("/subscriptions/{id}/rotate-secret")]
pub async fn rotate_secret(found: Operate<Sub>) -> Result<Json<RotatedSecret>, ApiError> {
    let Found { who, it: Sub(old) } = found;
    let state = &who.state;
    editable(&old)?;
    let secret = domain::new_secret();
    let mut sub = (*old).clone();
    sub.secret = Some(secret.clone());
    sub.updated_at = state.queue.store().now();
    if !state.queue.store().update_subscription(&sub).await? {
        return Err(ApiError::NotFound(format!("no subscription `{}`", sub.id)));
    }
    changed(state, &sub, false).await?;
    Ok(Json(RotatedSecret {
        subscription_id: sub.id.to_string(),
        secret,
    }))
}

/// Sends a `ping` now (on or off) and answers how that attempt went; it is in
/// the delivery log too.
#[utoipa::path(
    operation_id = "test_subscription",
    responses(
        (status = 200, description = "The attempt", body = TestedSubscription),
    )
)]
#[post("/subscriptions/{id}/test")]
pub async fn send_test(found: Operate<Sub>) -> Result<Json<TestedSubscription>, ApiError> {
    let (id, a) = found.who.state.hooks.test(&found.it.0).await?;
    Ok(Json(TestedSubscription {
        delivery_id: id.to_string(),
        ok: a.error.is_none(),
        url: a.url,
        status: a.status,
        duration_ms: ms(a.duration_us),
        error_kind: a.kind,
        error: a.error,
    }))
}
