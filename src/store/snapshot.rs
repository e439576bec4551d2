//! A decoded copy of every record of a table, reread only after a write. kubelet lists pods
//! every second; decoding every record from SQLite (JSON) each time costs milliseconds with
//! hundreds of pods, while writes (a pod created, stopped, removed) are rare.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use super::{Result, Store, Table};

/// A copy of the records and the table's write count it was read at.
type Kept<T> = Option<(u64, Arc<Vec<T>>)>;

pub struct Snapshot<T> {
    store: Store,
    table: Table,
    copy: Arc<Mutex<Kept<T>>>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> Snapshot<T> {
    pub fn new(store: Store, table: Table) -> Snapshot<T> {
        Snapshot {
            store,
            table,
            copy: Arc::default(),
        }
    }

    /// Every record of the table, oldest first, as the last committed write left them.
    pub async fn get(&self) -> Result<Arc<Vec<T>>> {
        let written = self.store.write_count(self.table);
        if let Some((count, records)) = self.lock().as_ref()
            && *count == written
        {
            return Ok(records.clone());
        }
        let (table, copy) = (self.table, self.copy.clone());
        self.store
            .run(move |c| {
                // Read in a transaction, which no write can share: the count is that of the
                // records read.
                let count = c.write_count(table);
                let records = Arc::new(c.list(table)?);
                let mut copy = copy.lock().unwrap_or_else(|p| p.into_inner());
                if copy.as_ref().is_none_or(|(kept, _)| *kept <= count) {
                    *copy = Some((count, records.clone()));
                }
                Ok(records)
            })
            .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<T>> {
        // Every change is one assignment: a panic cannot leave half of one.
        self.copy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Pod {
        n: u32,
    }

    #[tokio::test]
    async fn a_copy_lasts_until_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let pods = Snapshot::<Pod>::new(store.clone(), Table::Sandboxes);
        assert!(pods.get().await.unwrap().is_empty());
        store
            .run(|c| c.insert(Table::Sandboxes, "a", "a", "", &Pod { n: 1 }))
            .await
            .unwrap();
        let first = pods.get().await.unwrap();
        assert_eq!(*first, [Pod { n: 1 }]);
        assert!(
            Arc::ptr_eq(&first, &pods.get().await.unwrap()),
            "reread without a write"
        );

        store
            .run(|c| c.update(Table::Sandboxes, "a", &Pod { n: 2 }))
            .await
            .unwrap();
        assert_eq!(*pods.get().await.unwrap(), [Pod { n: 2 }]);
        // A write to another table keeps the copy.
        let kept = pods.get().await.unwrap();
        store
            .run(|c| c.insert(Table::Images, "i", "i", "", &Pod { n: 9 }))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&kept, &pods.get().await.unwrap()));

        // A failed transaction (rolled back) leaves the records as they were.
        let failed = store
            .run(|c| {
                c.insert(Table::Sandboxes, "b", "b", "", &Pod { n: 3 })?;
                c.insert(Table::Sandboxes, "c", "b", "", &Pod { n: 4 })
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(*pods.get().await.unwrap(), [Pod { n: 2 }]);

        store
            .run(|c| c.delete(Table::Sandboxes, "a"))
            .await
            .unwrap();
        assert!(pods.get().await.unwrap().is_empty());
    }
}
