//! Persistent metadata in SQLite: what must survive a daemon crash or a reboot.
//!
//! Only desired state and identity live here (sandboxes, containers, images, settings); live
//! kernel state is reconciled from /proc, cgroups and mounts at start. The database runs in WAL
//! mode with `synchronous=FULL`, so a write is on disk when the call returns and a SIGKILL at
//! any moment leaves a database the next start opens.

mod migrations;
mod snapshot;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use migrations::SCHEMA_VERSION;
pub use snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database {path}: {source}")]
    Full {
        path: String,
        source: rusqlite::Error,
    },
    #[error("metadata record {table}/{id} is not valid JSON: {source}")]
    Corrupt {
        table: &'static str,
        id: String,
        source: serde_json::Error,
    },
    #[error(
        "metadata database {path} has schema version {found}, newer than this ferrocri knows ({known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("the name {name:?} is already used by {table} {existing_id}")]
    NameInUse {
        table: &'static str,
        name: String,
        existing_id: String,
    },
    #[error("metadata task failed: {0}")]
    Join(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The tables that hold one JSON record per object, keyed by ID with a unique name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Sandboxes,
    Containers,
    Images,
}

impl Table {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Table::Sandboxes => "sandboxes",
            Table::Containers => "containers",
            Table::Images => "images",
        }
    }
}

/// A stored object as the generic tables keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    /// Unique per table: the CRI name key for sandboxes and containers, the image ID for images.
    pub name: String,
    /// Optional owner: a container's sandbox ID. Empty when unused.
    pub parent: String,
    pub record: String,
}

/// Handle to the database; cheap to clone. All access goes through [`Store::run`] (async) or
/// [`Store::blocking`], which run a closure as one transaction: every write in it lands
/// together or not at all.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// The database file, named in "disk full" errors.
    path: Arc<Path>,
    /// Per table, a count bumped by every write (inside its transaction): a copy read at
    /// count N is still current while the count is N ([`Snapshot`]).
    writes: Arc<[AtomicU64; Table::COUNT]>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL keeps readers off the writer's back; FULL syncs the WAL on every commit, so an
        // acknowledged RPC is durable even across power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.into(),
            writes: Arc::default(),
        })
    }

    /// Runs `f` as one transaction on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.blocking(f))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Runs `f` as one transaction on the calling thread.
    pub fn blocking<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        self.transaction(f).map_err(|e| match e {
            StoreError::Sqlite(source)
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                StoreError::Full {
                    path: self.path.display().to_string(),
                    source,
                }
            }
            other => other,
        })
    }

    fn transaction<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave SQLite inconsistent (the transaction
        // rolls back on drop), so a poisoned lock is safe to keep using.
        let mut guard: MutexGuard<'_, Connection> =
            self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Measured from BEGIN to COMMIT: the wait for the lock is not the database's time.
        let _timer = crate::prometheus::Timer::start(
            &crate::prometheus::metrics().store_transaction_duration,
        );
        let tx = guard.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = f(&Conn {
            db: &tx,
            writes: &self.writes,
        })?;
        tx.commit()?;
        Ok(result)
    }

    /// Runs SQLite's own consistency check; returns its findings ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String> {
        self.blocking(|c| Ok(c.db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    }

    /// How many writes `table` has had since the store opened (see `writes`).
    fn write_count(&self, table: Table) -> u64 {
        self.writes[table.index()].load(Ordering::Acquire)
    }
}

/// The database inside one transaction.
pub struct Conn<'a> {
    db: &'a Connection,
    writes: &'a [AtomicU64; Table::COUNT],
}

impl Conn<'_> {
    /// Counts a write to `table` (before it is made: a write that then fails costs a
    /// [`Snapshot`] one needless reread, never a stale copy).
    fn count_write(&self, table: Table) {
        self.writes[table.index()].fetch_add(1, Ordering::AcqRel);
    }

    /// `table`'s write count as of this transaction (no write can be under way meanwhile).
    fn write_count(&self, table: Table) -> u64 {
        self.writes[table.index()].load(Ordering::Acquire)
    }

    /// Reads a setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Writes a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.db.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Inserts a new object; fails with [`StoreError::NameInUse`] when another object of the
    /// table already has `name`.
    pub fn insert<T: Serialize>(
        &self,
        table: Table,
        id: &str,
        name: &str,
        parent: &str,
        record: &T,
    ) -> Result<()> {
        self.count_write(table);
        let sql = format!(
            "INSERT INTO {} (id, name, parent, record) VALUES (?1, ?2, ?3, ?4)",
            table.name()
        );
        match self
            .db
            .execute(&sql, params![id, name, parent, to_json(record)])
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                let existing_id = self.id_by_name(table, name)?.unwrap_or_default();
                Err(StoreError::NameInUse {
                    table: table.name(),
                    name: name.to_owned(),
                    existing_id,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the record of an existing object; returns false when there is no such object.
    pub fn update<T: Serialize>(&self, table: Table, id: &str, record: &T) -> Result<bool> {
        self.count_write(table);
        let sql = format!("UPDATE {} SET record = ?2 WHERE id = ?1", table.name());
        Ok(self.db.execute(&sql, params![id, to_json(record)])? > 0)
    }

    /// Deletes an object; returns false when it was already gone.
    pub fn delete(&self, table: Table, id: &str) -> Result<bool> {
        self.count_write(table);
        let sql = format!("DELETE FROM {} WHERE id = ?1", table.name());
        Ok(self.db.execute(&sql, params![id])? > 0)
    }

    /// Reads one object's record.
    pub fn get<T: DeserializeOwned>(&self, table: Table, id: &str) -> Result<Option<T>> {
        let sql = format!("SELECT record FROM {} WHERE id = ?1", table.name());
        let json: Option<String> = self
            .db
            .query_row(&sql, params![id], |r| r.get(0))
            .optional()?;
        json.map(|j| from_json(table, id, &j)).transpose()
    }

    /// The object with ID `id`, or else the only one whose ID starts with `id` (crictl sends
    /// unique prefixes). None when there is no such object or the prefix is ambiguous.
    pub fn find_by_id_or_prefix<T: DeserializeOwned>(
        &self,
        table: Table,
        id: &str,
    ) -> Result<Option<T>> {
        if id.is_empty() {
            return Ok(None);
        }
        if let Some(exact) = self.get(table, id)? {
            return Ok(Some(exact));
        }
        let sql = format!(
            "SELECT id, record FROM {} WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2",
            table.name()
        );
        let mut stmt = self.db.prepare_cached(&sql)?;
        let found = stmt
            .query_map(params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match found.as_slice() {
            [(id, json)] => from_json(table, id, json).map(Some),
            _ => Ok(None),
        }
    }

    /// Finds the ID of the object with `name`.
    pub fn id_by_name(&self, table: Table, name: &str) -> Result<Option<String>> {
        let sql = format!("SELECT id FROM {} WHERE name = ?1", table.name());
        Ok(self
            .db
            .query_row(&sql, params![name], |r| r.get(0))
            .optional()?)
    }

    /// Every row of a table, oldest first.
    pub fn rows(&self, table: Table) -> Result<Vec<Row>> {
        let sql = format!(
            "SELECT id, name, parent, record FROM {} ORDER BY seq",
            table.name()
        );
        let mut stmt = self.db.prepare_cached(&sql)?;
        let rows = stmt.query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                name: r.get(1)?,
                parent: r.get(2)?,
                record: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every record of a table, decoded, oldest first.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>> {
        self.rows(table)?
            .iter()
            .map(|row| from_json(table, &row.id, &row.record))
            .collect()
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn to_json<T: Serialize>(record: &T) -> String {
    // Serializing our own record types cannot fail: they hold no maps with non-string keys.
    serde_json::to_string(record).expect("metadata records serialize to JSON")
}

fn from_json<T: DeserializeOwned>(table: Table, id: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        table: table.name(),
        id: id.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pod {
        name: String,
        attempt: u32,
    }

    fn pod(attempt: u32) -> Pod {
        Pod {
            name: "web".into(),
            attempt,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn settings_round_trip() {
        let (_d, s) = open();
        s.blocking(|c| {
            assert_eq!(c.setting("pod_cidr")?, None);
            c.set_setting("pod_cidr", "10.0.0.0/8")?;
            c.set_setting("pod_cidr", "10.1.0.0/16")?;
            assert_eq!(c.setting("pod_cidr")?.as_deref(), Some("10.1.0.0/16"));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn records_round_trip_and_names_are_unique() {
        let (_d, store) = open();
        store
            .blocking(|s| {
                s.insert(Table::Sandboxes, "a1", "web_default_uid_0", "", &pod(0))?;
                assert_eq!(s.get::<Pod>(Table::Sandboxes, "a1")?, Some(pod(0)));
                let err = s
                    .insert(Table::Sandboxes, "b2", "web_default_uid_0", "", &pod(0))
                    .unwrap_err();
                assert!(
                    matches!(&err, StoreError::NameInUse { existing_id, .. } if existing_id == "a1")
                );
                assert!(err.to_string().contains("a1"));
                let found = s.id_by_name(Table::Sandboxes, "web_default_uid_0")?;
                assert_eq!(found.as_deref(), Some("a1"));
                assert!(s.update(Table::Sandboxes, "a1", &pod(1))?);
                assert!(!s.update(Table::Sandboxes, "zz", &pod(1))?);
                assert_eq!(s.list::<Pod>(Table::Sandboxes)?[0].attempt, 1);
                assert!(s.delete(Table::Sandboxes, "a1")?);
                assert!(!s.delete(Table::Sandboxes, "a1")?);
                assert!(s.rows(Table::Sandboxes)?.is_empty());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn lookup_by_id_or_unique_prefix() {
        let (_d, store) = open();
        store
            .blocking(|s| {
                s.insert(Table::Sandboxes, "abc1", "n1", "", &pod(1))?;
                s.insert(Table::Sandboxes, "abc2", "n2", "", &pod(2))?;
                s.insert(Table::Sandboxes, "abd", "n3", "", &pod(3))?;
                let find = |id| s.find_by_id_or_prefix::<Pod>(Table::Sandboxes, id);
                assert_eq!(find("abc2")?.map(|p| p.attempt), Some(2));
                assert_eq!(find("abd")?.map(|p| p.attempt), Some(3));
                assert_eq!(find("abc")?, None, "ambiguous");
                assert_eq!(find("x")?, None);
                assert_eq!(find("")?, None);
                assert_eq!(find("%")?, None);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_behind() {
        let (_d, store) = open();
        let err = store.blocking(|s| {
            s.insert(Table::Images, "i1", "i1", "", &pod(0))?;
            // The second insert breaks the unique name: the first must roll back with it.
            s.insert(Table::Images, "i2", "i1", "", &pod(0))
        });
        assert!(err.is_err());
        let rows = store.blocking(|s| s.rows(Table::Images)).unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn containers_need_their_sandbox() {
        let (_d, store) = open();
        let rec = serde_json::json!({});
        let orphan = store.blocking(|s| s.insert(Table::Containers, "c1", "n", "missing", &rec));
        assert!(orphan.is_err());
        store
            .blocking(|s| {
                s.insert(Table::Sandboxes, "p1", "pod", "", &rec)?;
                s.insert(Table::Containers, "c1", "n", "p1", &rec)
            })
            .unwrap();
        // A sandbox cannot disappear under its containers.
        assert!(
            store
                .blocking(|s| s.delete(Table::Sandboxes, "p1"))
                .is_err()
        );
        store
            .blocking(|s| {
                s.delete(Table::Containers, "c1")?;
                s.delete(Table::Sandboxes, "p1")
            })
            .unwrap();
    }

    #[test]
    fn rows_keep_insertion_order() {
        let (_d, store) = open();
        let ids = store
            .blocking(|s| {
                for id in ["z", "a", "m"] {
                    s.insert(Table::Images, id, id, "", &serde_json::json!({"id": id}))?;
                }
                Ok(s.rows(Table::Images)?
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(ids, ["z", "a", "m"]);
    }

    #[test]
    fn reopen_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        {
            let s = Store::open(&path).unwrap();
            s.blocking(|c| c.set_setting("k", "v")).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.blocking(|c| c.setting("k")).unwrap().as_deref(),
            Some("v")
        );
        assert_eq!(s.integrity_check().unwrap(), "ok");
        let version: i64 = s
            .blocking(|c| Ok(c.db.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }

    #[test]
    fn corrupt_record_is_reported_not_panicked() {
        let (_d, store) = open();
        let err = store
            .blocking(|s| {
                s.db.execute(
                    "INSERT INTO images (id, name, parent, record) VALUES ('i', 'i', '', '{no')",
                    [],
                )?;
                s.get::<Pod>(Table::Images, "i")
            })
            .unwrap_err();
        assert!(err.to_string().contains("images/i"), "{err}");
    }
}
