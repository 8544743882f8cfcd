//! Which error codes a trigger's call may answer, at which status, and when:
//! the codes `http/error.rs`, `codec/input.rs` and `engine/answer.rs` really
//! send, narrowed to those a given trigger can meet (a GET has no body to be
//! too large; an async trigger never answers with its flow's failure). A code
//! added there is added here, or the API test that checks real answers
//! against the document fails on it.

use crate::domain::Mode;
use crate::flow::statuses::AnswerStatuses;
use crate::flow::{Auth, Method, Trigger};

/// An error code with its status and what it means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub status: u16,
    pub code: &'static str,
    pub when: &'static str,
}

const fn code(status: u16, code: &'static str, when: &'static str) -> Code {
    Code { status, code, when }
}

/// The codes of a call of `trigger` with `method`, in status order.
pub fn call_codes(trigger: &Trigger, method: Method, statuses: &AnswerStatuses) -> Vec<Code> {
    let body = method == Method::Post;
    let sync = trigger.response.mode == Mode::Sync;
    let key = trigger.delivery.ordering_key.is_some();
    let mut codes = vec![code(
        400,
        "invalid_query",
        "the query string cannot be decoded (not UTF-8 once percent-decoded)",
    )];
    if !trigger.params.is_empty() {
        codes.push(code(
            400,
            "invalid_parameter",
            "a query parameter is missing, mistyped, outside its `enum` or bounds, or given twice; one error per parameter",
        ));
    }
    if body {
        codes.push(code(400, "too_deep", "the JSON or XML body nests too deep"));
    }
    if body || key {
        codes.push(code(
            400,
            "invalid_body",
            "the body does not match its content type or the body schema (one error per violation, with its `pointer`), or the ordering key cannot be computed from it",
        ));
    }
    if key {
        codes.push(code(
            400,
            "invalid_ordering_key",
            "the ordering key is null (a missing field), or not a string or a number",
        ));
    }
    codes.push(code(400, "invalid_header", "a malformed `Idempotency-Key`"));
    codes.extend(auth_codes(trigger));
    if body {
        codes.push(code(
            408,
            "body_timeout",
            "the body did not arrive in time; the connection is closed",
        ));
    }
    if sync && trigger.delivery.ordered {
        codes.push(code(
            409,
            "lane_blocked",
            "the ordered lane is held by a failed message (`blocked_by`) until an operator lets go of it; nothing was stored",
        ));
    }
    if body {
        codes.push(code(
            413,
            "payload_too_large",
            "the body is larger than the server's limit",
        ));
    }
    codes.push(code(
        429,
        "backlog_full",
        "the trigger's queue is full; retry after `Retry-After`",
    ));
    if sync {
        codes.push(code(
            500,
            "flow_failed",
            "the flow failed; the message names the step, `message_id` the message",
        ));
        codes.push(code(
            500,
            "budget_exceeded",
            "the flow ran out of its time or memory budget",
        ));
        for status in &statuses.fail {
            codes.push(code(
                *status,
                "rejected",
                "the flow turned the request down (a `fail` step); the message says why",
            ));
        }
    }
    codes.push(INTERNAL);
    codes.push(STORE_UNAVAILABLE);
    codes.sort_by_key(|c| c.status);
    codes
}

/// The codes of the status URL of `trigger`.
pub fn status_url_codes(trigger: &Trigger) -> Vec<Code> {
    let mut codes = auth_codes(trigger);
    codes.push(INTERNAL);
    codes.push(STORE_UNAVAILABLE);
    codes.sort_by_key(|c| c.status);
    codes
}

const NOT_FOUND: Code = code(
    404,
    "not_found",
    "no such trigger (it was removed or disabled) or message",
);
const INTERNAL: Code = code(
    500,
    "internal",
    "an error of the server; details are in its log",
);
const STORE_UNAVAILABLE: Code = code(
    503,
    "store_unavailable",
    "messages cannot be stored right now; retry after `Retry-After`",
);

/// What the credential checks answer, and the 404 of a trigger that is gone.
fn auth_codes(trigger: &Trigger) -> Vec<Code> {
    let mut codes = Vec::new();
    if matches!(trigger.auth, Auth::ApiKeys(_)) {
        codes.push(code(
            401,
            "unauthorized",
            "no key, a wrong key, or a key this trigger does not accept",
        ));
        codes.push(code(
            401,
            "key_expired",
            "the key's expiry has passed: ask for a new key",
        ));
        codes.push(code(
            429,
            "too_many_failures",
            "too many failed keys from this address; retry after `Retry-After`",
        ));
        codes.push(code(
            429,
            "rate_limited",
            "past the consumer's `rate` (when it has one; see the `RateLimit-*` headers); retry after `Retry-After`",
        ));
        codes.push(code(
            429,
            "quota_exceeded",
            "past the consumer's daily `quota` (when it has one); `Retry-After` is the seconds to midnight UTC",
        ));
        codes.push(code(
            503,
            "auth_busy",
            "too many keys wait to be verified; retry after `Retry-After`",
        ));
    }
    if !trigger.allow_ips.is_empty() {
        codes.push(code(
            403,
            "forbidden",
            "calls from this address are not allowed",
        ));
    }
    codes.push(NOT_FOUND);
    codes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::domain::{TenantName, TriggerName};
    use crate::flow::Tenant;
    use crate::flow::loader::compile_trigger_source;

    fn trigger(yaml: &str) -> Trigger {
        let tenant = Tenant::empty(TenantName::parse("t").unwrap());
        compile_trigger_source(
            &tenant,
            TriggerName::parse("x").unwrap(),
            Path::new("x.yaml"),
            yaml,
        )
        .unwrap_or_else(|d| panic!("{d:?}"))
    }

    fn call(yaml: &str, method: Method) -> Vec<(u16, &'static str)> {
        let t = trigger(yaml);
        call_codes(&t, method, &AnswerStatuses::of(&t.steps))
            .into_iter()
            .map(|c| (c.status, c.code))
            .collect()
    }

    #[test]
    fn each_trigger_lists_the_codes_it_can_meet() {
        // Open, GET, async, no params: no key, body or flow codes.
        let open = "auth: { none: true }\nmethods: [GET]\nresponse: { mode: async }\nsteps: [ { log: '1' } ]\n";
        assert_eq!(
            call(open, Method::Get),
            [
                (400, "invalid_query"),
                (400, "invalid_header"),
                (404, "not_found"),
                (429, "backlog_full"),
                (500, "internal"),
                (503, "store_unavailable"),
            ]
        );
        // Sync, ordered by a key, POST, with a `fail` step: all of those.
        let busy = "auth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.k }\nsteps:\n  - if: .body.k == 0\n    then: [ { fail: { status: 422, message: '\"no\"' } } ]\n";
        let codes = call(busy, Method::Post);
        for want in [
            (400, "too_deep"),
            (400, "invalid_body"),
            (400, "invalid_ordering_key"),
            (408, "body_timeout"),
            (409, "lane_blocked"),
            (413, "payload_too_large"),
            (422, "rejected"),
            (500, "flow_failed"),
            (500, "budget_exceeded"),
        ] {
            assert!(codes.contains(&want), "{want:?} in {codes:?}");
        }
        assert!(!codes.iter().any(|(s, _)| *s == 401 || *s == 403));
        let statuses: Vec<u16> = codes.iter().map(|c| c.0).collect();
        assert!(statuses.is_sorted(), "{statuses:?}");
        // Addresses limited: 403 too.
        let limited = busy.replace("{ none: true }", "{ none: true, allow_ips: [10.0.0.0/8] }");
        assert!(call(&limited, Method::Post).contains(&(403, "forbidden")));
    }
}
