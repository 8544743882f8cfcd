//! What every admin handler needs before it acts: the token's identity (401
//! without one), for a handler that changes something the token's role (403
//! `read_only_token` for a `read` token: [`Operator`], [`Operate`]), and for
//! `/{id}` paths the message or delivery it names as the token may see it (404
//! for another tenant's, exactly as for none). Handlers take these as arguments
//! and are left with the act.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::auth::admin::AdminIdentity;
use crate::domain::{MessageId, MessageView, TenantName};
use crate::store::{DeliveryView, StoreError};

use super::{ApiError, AppState, authorize, parse_id};

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// The request's admin token, checked, with the app's state; `operate`: the
/// handler changes something, which a token of role `read` may not.
async fn authorized(req: &HttpRequest, operate: bool) -> Result<Admin, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the admin API has no state".into()))?;
    let who = authorize(req, &state).await?;
    if operate && !who.operates() {
        return Err(ApiError::ReadOnlyToken {
            label: who.label.clone(),
        });
    }
    Ok(Admin {
        identity: who,
        state,
    })
}

/// An authorized admin token, with the app's state it asks of (which the
/// check read): an argument of every admin handler (after the query or body,
/// so that a malformed request is a 400 before the token is checked, as it
/// always was), which needs nothing else to act.
pub struct Admin {
    identity: Arc<AdminIdentity>,
    pub state: web::Data<AppState>,
}

impl std::ops::Deref for Admin {
    type Target = AdminIdentity;

    fn deref(&self) -> &AdminIdentity {
        &self.identity
    }
}

impl Admin {
    /// 404 for a tenant the token cannot see (or that does not exist).
    pub fn visible(&self, tenant: &str) -> Result<(), ApiError> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no tenant `{tenant}`")))
        }
    }

    /// `visible`, and the tenant's name parsed.
    pub fn tenant(&self, tenant: &str) -> Result<TenantName, ApiError> {
        self.visible(tenant)?;
        TenantName::parse(tenant).map_err(|_| ApiError::NotFound(format!("no tenant `{tenant}`")))
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authorized(&req, false).await })
    }
}

/// An authorized admin token of role `operate`: the argument of every handler
/// that changes something without naming an `{id}` (those take [`Operate`]).
/// A token of role `read` is answered 403 `read_only_token` before the handler
/// runs.
pub struct Operator(pub Admin);

impl std::ops::Deref for Operator {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.0
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(Operator(authorized(&req, true).await?)) })
    }
}

/// Something an admin path names by `{id}`, looked up as a token may see it.
pub trait Lookup: Sized + 'static {
    /// What a 404 calls it.
    const WHAT: &'static str;

    fn find(ask: Ask<'_>) -> impl Future<Output = Result<Option<Self>, ApiError>>;

    fn tenant(&self) -> &str;
}

/// What a [`Lookup`] is asked for: the path's `{id}`, parsed and as the path
/// spells it (`raw`, for the answers that name it), and by whom.
pub struct Ask<'a> {
    pub state: &'a AppState,
    pub who: &'a AdminIdentity,
    pub id: MessageId,
    pub raw: &'a str,
}

/// The path's `{id}` found (`T`) with the token that asked for it: the one
/// argument of a handler of `/{id}` paths. `OPERATE`:
/// the handler changes it, which takes a token of role `operate` (see
/// [`Operate`]).
pub struct Found<T, const OPERATE: bool = false> {
    pub who: Admin,
    pub it: T,
}

/// The path's `{id}` found for a handler that changes it: a token of role
/// `read` is answered 403 `read_only_token` before anything is looked up.
pub type Operate<T> = Found<T, true>;

impl<T: Lookup, const OPERATE: bool> FromRequest for Found<T, OPERATE> {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let who = authorized(&req, OPERATE).await?;
            let raw = req.match_info().get("id").unwrap_or_default();
            let not_found = || ApiError::NotFound(format!("no {} `{raw}`", T::WHAT));
            let id = parse_id(raw, T::WHAT)?;
            let ask = Ask {
                state: &who.state,
                who: &who,
                id,
                raw,
            };
            let it = T::find(ask).await?.ok_or_else(not_found)?;
            if !who.sees(it.tenant()) {
                return Err(not_found());
            }
            Ok(Found { who, it })
        })
    }
}

/// Why a message cannot be used, for an admin: unreadable documents are named
/// to those who may see the tenant, and 404 to others.
pub fn unusable(who: &AdminIdentity, id: &str, e: StoreError, replay: bool) -> ApiError {
    match e {
        StoreError::Unreadable { tenant, why, .. } if who.sees(tenant.as_str()) => {
            ApiError::Unreadable { why, replay }
        }
        StoreError::Unreadable { .. } => ApiError::NotFound(format!("no message `{id}`")),
        other => other.into(),
    }
}

/// A message to show or release. `REPLAY`: it is to run again, and documents
/// that cannot be read back are then a 409 (nothing was done), not a 500.
pub struct Message<const REPLAY: bool = false> {
    pub view: MessageView,
    pub replay_of: Option<MessageId>,
}

/// A message to run again.
pub type ToReplay = Message<true>;

impl<const REPLAY: bool> Lookup for Message<REPLAY> {
    const WHAT: &'static str = "message";

    async fn find(ask: Ask<'_>) -> Result<Option<Self>, ApiError> {
        let found = ask.state.queue.store().message_detail(ask.id).await;
        let found = found.map_err(|e| unusable(ask.who, ask.raw, e, REPLAY))?;
        Ok(found.map(|(view, replay_of)| Message { view, replay_of }))
    }

    fn tenant(&self) -> &str {
        self.view.head.tenant.as_str()
    }
}

impl Lookup for DeliveryView {
    const WHAT: &'static str = "delivery";

    async fn find(ask: Ask<'_>) -> Result<Option<Self>, ApiError> {
        Ok(ask.state.queue.store().get_delivery(ask.id).await?)
    }

    fn tenant(&self) -> &str {
        self.delivery.tenant.as_str()
    }
}
