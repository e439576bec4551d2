//! Schema migrations. The schema version lives in SQLite's `user_version`; each migration runs
//! in its own transaction together with the version bump, so a crash mid-migration leaves the
//! previous schema intact and the next start simply runs it again.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError};

/// Each entry upgrades the schema from version `index` to `index + 1`. Never edit a released
/// entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: settings and the three object tables. `seq` keeps insertion order for listings.
    "CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE sandboxes (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        id     TEXT NOT NULL UNIQUE,
        name   TEXT NOT NULL UNIQUE,
        parent TEXT NOT NULL DEFAULT '',
        record TEXT NOT NULL
    );
    CREATE TABLE containers (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        id     TEXT NOT NULL UNIQUE,
        name   TEXT NOT NULL UNIQUE,
        parent TEXT NOT NULL REFERENCES sandboxes(id),
        record TEXT NOT NULL
    );
    CREATE INDEX containers_by_parent ON containers(parent);
    CREATE TABLE images (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        id     TEXT NOT NULL UNIQUE,
        name   TEXT NOT NULL UNIQUE,
        parent TEXT NOT NULL DEFAULT '',
        record TEXT NOT NULL
    );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
