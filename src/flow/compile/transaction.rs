//! `transaction: { connection, steps }`: what may run inside a database
//! transaction. Its `sql` steps, on its connection, and the steps that only
//! compute (`set`, `log`, `fail`, `if`, `for_each`) may; an `http` call may not
//! (the transaction would hold its locks while the call waits), nor a
//! `respond` (the caller would hear of a success the commit may yet undo), nor
//! a second transaction, nor a statement on another connection.

use serde_saphyr::Spanned;

use crate::flow::raw::RawStep;

use super::cx::FileCx;

/// Reports each step of `steps` (and of the steps nested in them) that may not
/// run inside a transaction on `connection`.
pub(super) fn refuse_inside(cx: &mut FileCx<'_>, steps: &[Spanned<RawStep>], connection: &str) {
    for step in steps {
        let s = &step.value;
        if let Some(h) = &s.http {
            cx.error(
                h.referenced,
                "an `http` step cannot run inside a `transaction`: the transaction would stay open, holding its locks, while the call waits; call before or after the transaction",
            );
        }
        if let Some(r) = &s.respond {
            cx.error(
                r.referenced,
                "`respond` cannot run inside a `transaction`: the caller would be answered before the transaction commits; respond after it",
            );
        }
        if let Some(t) = &s.transaction {
            cx.error(
                t.referenced,
                "a `transaction` cannot hold another `transaction`: put the steps in the outer one",
            );
        }
        if let Some(q) = &s.sql
            && q.value.connection.value != connection
        {
            cx.error(
                q.value.connection.referenced,
                format!(
                    "this `sql` step uses connection `{}` inside a transaction on `{connection}`: only statements on the transaction's connection can run inside it",
                    q.value.connection.value
                ),
            );
        }
        if let (Some(r), Some(_)) = (&s.retry, &s.sql) {
            cx.error(
                r.referenced,
                "`retry` does not apply inside a `transaction`: a failed statement ends the transaction; `delivery.retry` runs the message again",
            );
        }
        for nested in [&s.then, &s.else_, &s.do_].into_iter().flatten() {
            refuse_inside(cx, &nested.value, connection);
        }
    }
}
