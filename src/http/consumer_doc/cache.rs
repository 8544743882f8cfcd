//! Documents already built, by tenant and consumer label, for the catalog
//! they were built from. A document lists every answer of every trigger a
//! key may call and is not cheap to build (tens of kilobytes of JSON); it
//! changes only when the flow files do. A reload swaps in a new catalog, and
//! the first request after it empties the cache: it never holds more than one
//! document per consumer of the catalog in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::flow::Catalog;

#[derive(Default)]
pub struct DocCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The catalog the documents were built from (held weakly: an old catalog
    /// is not kept alive by its documents, and its allocation, which the weak
    /// pointer keeps, cannot be taken for a new one's).
    catalog: Weak<Catalog>,
    docs: HashMap<(String, String), Bytes>,
}

impl DocCache {
    /// The document of `label` of `tenant` in `catalog`: the one built before,
    /// or the one `build` makes now.
    pub fn get_or_build<E>(
        &self,
        catalog: &Arc<Catalog>,
        tenant: &str,
        label: &str,
        build: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Bytes, E> {
        let key = (tenant.to_owned(), label.to_owned());
        {
            let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if !Weak::ptr_eq(&inner.catalog, &Arc::downgrade(catalog)) {
                inner.catalog = Arc::downgrade(catalog);
                inner.docs.clear();
            }
            if let Some(doc) = inner.docs.get(&key) {
                return Ok(doc.clone());
            }
        }
        // Built outside the lock: two requests may both build it, once.
        let doc = Bytes::from(build()?);
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if Weak::ptr_eq(&inner.catalog, &Arc::downgrade(catalog)) {
            inner.docs.insert(key, doc.clone());
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_built_once_per_catalog() {
        let cache = DocCache::default();
        let built = std::cell::Cell::new(0);
        let build = || {
            built.set(built.get() + 1);
            Ok::<_, ()>(format!("doc {}", built.get()).into_bytes())
        };
        let first = Arc::new(Catalog::default());
        assert_eq!(
            cache.get_or_build(&first, "acme", "shop", build),
            Ok(Bytes::from("doc 1"))
        );
        assert_eq!(
            cache.get_or_build(&first, "acme", "shop", build),
            Ok(Bytes::from("doc 1"))
        );
        assert_eq!(
            cache.get_or_build(&first, "acme", "erp", build),
            Ok(Bytes::from("doc 2"))
        );
        // A reload: everything is built again.
        let second = Arc::new(Catalog::default());
        assert_eq!(
            cache.get_or_build(&second, "acme", "shop", build),
            Ok(Bytes::from("doc 3"))
        );
        assert_eq!(cache.0.lock().unwrap().docs.len(), 1);
        assert_eq!(
            cache.get_or_build(&first, "acme", "shop", build),
            Ok(Bytes::from("doc 4"))
        );
    }
}
