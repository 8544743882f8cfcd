//! Flow files -> validated model. `raw` mirrors the YAML, `compile` checks it and
//! collects every error with its position, `loader` walks `flows/` and keeps the
//! last good version of each file for hot reload.

pub mod catalog;
pub mod compile;
pub mod diagnostic;
pub mod expr;
pub mod fast;
pub mod loader;
pub mod model;
pub mod params;
pub mod raw;
pub mod schema;
pub mod statuses;
pub mod template;
pub mod value;

pub use catalog::{Catalog, SharedCatalog};
pub use diagnostic::Diagnostic;
pub use expr::{EvalError, Expr};
pub use loader::{LoadReport, Loader, TestFile, check_dir, check_dir_with};
pub use model::{
    Auth, KeyWithId, Method, OnExhausted, OnTimeout, Step, StepKind, Subscription, Tenant, Trigger,
};
pub use template::{Template, TemplatePart};
