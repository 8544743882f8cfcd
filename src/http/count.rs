//! Counts each trigger call's answer by status, for `/_metrics`. A middleware of
//! its own rather than `from_fn`: that one boxes the inner call's future, and this
//! runs on every trigger request. The lookup borrows the names from the path and
//! only loaded triggers get counters (names from a URL must not create series).

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, web};

use crate::metrics::TriggerMetrics;

use super::AppState;

pub struct CountRequests;

impl<S, B> Transform<S, ServiceRequest> for CountRequests
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = Counting<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(Counting { service }))
    }
}

pub struct Counting<S> {
    service: S,
}

fn counters(req: &ServiceRequest) -> Option<Arc<TriggerMetrics>> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let tenant = req.match_info().get("tenant")?;
    let trigger = req.match_info().get("trigger")?;
    let metrics = state.queue.dispatcher().metrics();
    metrics.find(tenant, trigger).or_else(|| {
        state
            .catalog
            .get()
            .trigger(tenant, trigger)
            .map(|_| metrics.trigger(tenant, trigger))
    })
}

impl<S, B> Service<ServiceRequest> for Counting<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: Unpin,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Counted<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let counters = counters(&req);
        Counted {
            inner: self.service.call(req),
            counters,
        }
    }
}

pub struct Counted<F> {
    inner: F,
    counters: Option<Arc<TriggerMetrics>>,
}

impl<F, B> Future for Counted<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if let (Ok(res), Some(c)) = (&out, &self.counters) {
            c.request(res.status().as_u16());
        }
        Poll::Ready(out)
    }
}
