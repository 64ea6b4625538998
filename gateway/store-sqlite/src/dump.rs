//! Every row of a table, as text: what `skyport storage migrate` copies to a shared
//! database. The stores are opened first, so an older database is migrated (its missing
//! columns added) before it is read.

use std::path::Path;

use anyhow::Context;
use rusqlite::types::ValueRef;

/// Every row of `table`'s `columns` in `<state_dir>/skyport.db`, in rowid order; each
/// value as text (NULL as `None`).
pub fn rows(
    state_dir: &Path,
    table: &str,
    columns: &[&str],
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let path = state_dir.join("skyport.db");
    anyhow::ensure!(path.exists(), "no SQLite database at {}", path.display());
    crate::SqliteInventory::open(state_dir)?;
    crate::SqliteAccessKeys::open(state_dir)?;
    crate::SqliteKeyPairs::open(state_dir)?;
    crate::SqliteCatalogChanges::open(state_dir)?;
    crate::SqlitePlacementAudit::open(state_dir)?;
    crate::SqliteDeployments::open(state_dir)?;
    crate::SqliteInstanceLeases::open(state_dir)?;
    crate::SqliteApprovals::open(state_dir)?;
    crate::SqliteEvents::open(state_dir)?;
    crate::SqliteSla::open(state_dir)?;
    crate::SqliteSessions::open(state_dir)?;
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let sql = format!("SELECT {} FROM {table} ORDER BY rowid", columns.join(", "));
    let mut stmt = conn
        .prepare(&sql)
        .with_context(|| format!("reading table {table}"))?;
    let rows = stmt.query_map([], |row| {
        (0..columns.len())
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => None,
                    ValueRef::Integer(n) => Some(n.to_string()),
                    ValueRef::Real(x) => Some(x.to_string()),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                })
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
