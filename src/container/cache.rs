//! The container records in memory, in step with the store. kubelet lists containers every
//! second, and decoding every record from SQLite (JSON with base64 protobuf inside) each time
//! costs milliseconds with a thousand containers. The store stays the source of truth: the
//! cache is filled from it on first use, every write changes both in one transaction, and a
//! failed write drops the cache so that the next read fills it again.

use std::sync::{Arc, Mutex, MutexGuard};

use super::record::ContainerRecord;
use crate::store::{self, Conn, Store, Table};

type Records = Vec<Arc<ContainerRecord>>;

#[derive(Clone)]
pub struct RecordCache {
    store: Store,
    /// Every record in creation order (the store's order); None until filled.
    records: Arc<Mutex<Option<Records>>>,
}

impl RecordCache {
    pub fn new(store: Store) -> RecordCache {
        RecordCache {
            store,
            records: Arc::default(),
        }
    }

    /// Every container record, oldest first.
    pub async fn all(&self) -> store::Result<Records> {
        if let Some(records) = lock(&self.records).as_ref() {
            return Ok(records.clone());
        }
        let cache = self.records.clone();
        self.store
            .run(move |c| {
                let records: Records = c
                    .list(Table::Containers)?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                // Filled inside the transaction: no write can come between the read and this.
                *lock(&cache) = Some(records.clone());
                Ok(records)
            })
            .await
    }

    /// The record with ID `id`, or else the only one whose ID starts with `id` (crictl sends
    /// unique prefixes). None when there is none or the prefix is ambiguous.
    pub async fn find(&self, id: &str) -> store::Result<Option<Arc<ContainerRecord>>> {
        if id.is_empty() {
            return Ok(None);
        }
        let records = self.all().await?;
        if let Some(exact) = records.iter().find(|r| r.id == id) {
            return Ok(Some(exact.clone()));
        }
        let mut prefixed = records.iter().filter(|r| r.id.starts_with(id));
        Ok(match (prefixed.next(), prefixed.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        })
    }

    /// Inserts a new record under its CRI name key; the store refuses a name in use.
    pub async fn insert(&self, name: String, record: ContainerRecord) -> store::Result<()> {
        let record = Arc::new(record);
        let stored = record.clone();
        self.write(
            move |c| {
                c.insert(
                    Table::Containers,
                    &stored.id,
                    &name,
                    &stored.sandbox_id,
                    &*stored,
                )
            },
            move |records, ()| records.push(record),
        )
        .await
    }

    /// Replaces a record (nothing when it is gone).
    pub async fn update(&self, record: ContainerRecord) -> store::Result<()> {
        let record = Arc::new(record);
        let stored = record.clone();
        self.write(
            move |c| c.update(Table::Containers, &stored.id, &*stored),
            move |records, updated| {
                if *updated && let Some(slot) = records.iter_mut().find(|r| r.id == record.id) {
                    *slot = record;
                }
            },
        )
        .await
        .map(drop)
    }

    pub async fn delete(&self, id: String) -> store::Result<()> {
        let stored = id.clone();
        self.write(
            move |c| c.delete(Table::Containers, &stored),
            move |records, _| records.retain(|r| r.id != id),
        )
        .await
        .map(drop)
    }

    /// Runs `write` on the store and, in the same transaction, `change` on the cache, so the
    /// two see the writes in the same order.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Conn<'_>) -> store::Result<T> + Send + 'static,
        change: impl FnOnce(&mut Records, &T) + Send + 'static,
    ) -> store::Result<T> {
        let cache = self.records.clone();
        let result = self
            .store
            .run(move |c| {
                let out = write(c)?;
                if let Some(records) = lock(&cache).as_mut() {
                    change(records, &out);
                }
                Ok(out)
            })
            .await;
        if result.is_err() {
            // The commit may have failed after the cache changed: read the store again.
            *lock(&self.records) = None;
        }
        result
    }
}

fn lock(records: &Mutex<Option<Records>>) -> MutexGuard<'_, Option<Records>> {
    // Every change is a single assignment, push or retain: a panic cannot leave half of one.
    records.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::State;

    fn record(id: &str, state: State) -> ContainerRecord {
        ContainerRecord::for_test(id, state)
    }

    fn ids(records: &Records) -> Vec<(&str, State)> {
        records.iter().map(|r| (r.id.as_str(), r.state)).collect()
    }

    #[tokio::test]
    async fn stays_in_step_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        store
            .run(|c| c.insert(Table::Sandboxes, "p1", "pod", "", &serde_json::json!({})))
            .await
            .unwrap();
        let cache = RecordCache::new(store.clone());
        // Writes before the first read, then after it.
        cache
            .insert("a".into(), record("abc", State::Created))
            .await
            .unwrap();
        assert_eq!(ids(&cache.all().await.unwrap()), [("abc", State::Created)]);
        cache
            .insert("b".into(), record("abd", State::Created))
            .await
            .unwrap();
        cache
            .insert("c".into(), record("x1", State::Created))
            .await
            .unwrap();
        cache.update(record("abc", State::Running)).await.unwrap();
        cache.update(record("gone", State::Running)).await.unwrap();
        cache.delete("abd".into()).await.unwrap();
        let err = cache.insert("c".into(), record("x2", State::Created)).await;
        assert!(err.is_err(), "the name is in use");

        let expected = [("abc", State::Running), ("x1", State::Created)];
        assert_eq!(ids(&cache.all().await.unwrap()), expected);
        let fresh = RecordCache::new(store);
        assert_eq!(ids(&fresh.all().await.unwrap()), expected);

        let find = |id: &'static str| {
            let cache = cache.clone();
            async move { cache.find(id).await.unwrap().map(|r| r.id.clone()) }
        };
        assert_eq!(find("ab").await.as_deref(), Some("abc"));
        assert_eq!(find("x1").await.as_deref(), Some("x1"));
        cache
            .insert("d".into(), record("x12", State::Created))
            .await
            .unwrap();
        assert_eq!(find("x1").await.as_deref(), Some("x1"), "exact wins");
        assert_eq!(find("x").await, None, "ambiguous");
        assert_eq!(find("").await, None);
    }
}
