//! The whole store ([`Store`]): opening the one a database URL names, waiting for a database
//! that is not up yet, and telling an unreachable database from a refused query.

use std::sync::Arc;

use anyhow::{Result, bail};

use super::alerts::AlertStore;
use super::checkpoints::CheckpointStore;
use super::dialect::ACQUIRE_TIMEOUT;
use super::postgres::{self, PgStore};
use super::queries::QueryStore;
use super::sink::SinkStore;
use super::sqlite::SqliteStore;

/// The whole store: every client's trait.
pub trait Store: SinkStore + CheckpointStore + AlertStore + QueryStore {}

impl<T: SinkStore + CheckpointStore + AlertStore + QueryStore + ?Sized> Store for T {}

/// Opens the store a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        bail!(
            "unsupported database URL `{}`: expected postgres://… or sqlite:…",
            postgres::redact(url)
        )
    }
}

/// [`open`], waiting out a database that cannot be reached yet (it starts after us, or is
/// restarting): retries with backoff up to 10 s apart, logging each try, until it answers or
/// `shutdown` fires. Other errors (a bad URL, a wrong password, a failed migration) are
/// returned at once.
pub async fn open_waiting(
    url: &str,
    shutdown: &mut tickcast_core::shutdown::Shutdown,
) -> Result<Arc<dyn Store>> {
    let mut backoff = tickcast_core::stage::Backoff::new();
    loop {
        match open(url).await {
            Ok(store) => return Ok(store),
            Err(e) => {
                let Some(why) = unavailable(&e) else {
                    return Err(e);
                };
                tracing::warn!(url = %postgres::redact(url), error = %why, retry_in_ms = backoff.next().as_millis() as u64, "database unreachable; waiting for it");
            }
        }
        if !backoff.sleep(shutdown).await {
            bail!(
                "stopped while waiting for the database at {}",
                postgres::redact(url)
            );
        }
    }
}

/// Why `e` means the database cannot serve now (as opposed to a query it refused), or
/// `None`: no connection within [`ACQUIRE_TIMEOUT`], a closed pool, a broken socket, a Postgres error of class 08 (connection exception), 57P0x (shutting down,
/// cannot connect now) or 53 (disk full, out of memory, too many connections), or SQLite's
/// BUSY, LOCKED, IOERR or FULL.
pub fn unavailable(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        let err = cause.downcast_ref::<sqlx::Error>()?;
        match err {
            sqlx::Error::PoolTimedOut => Some(format!(
                "no database connection within {} ms",
                ACQUIRE_TIMEOUT.as_millis()
            )),
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Some(err.to_string()),
            sqlx::Error::Io(io) => Some(format!("database connection: {io}")),
            // A TLS failure (an unknown CA, a name mismatch, a server without TLS) is a
            // setting to mend, not an outage to wait out.
            sqlx::Error::Database(db) => {
                if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    // The primary result code: BUSY, LOCKED, IOERR, FULL.
                    let code: i32 = sqlx::error::DatabaseError::code(lite)?.parse().ok()?;
                    return matches!(code & 0xff, 5 | 6 | 10 | 13)
                        .then(|| format!("database: {} (SQLite code {code})", db.message()));
                }
                let code = db.code()?;
                // 08: connection; 57P0x: shutting down; 53: out of disk, memory or
                // connections.
                (code.starts_with("08") || code.starts_with("57P0") || code.starts_with("53"))
                    .then(|| format!("database: {} ({code})", db.message()))
            }
            _ => None,
        }
    })
}
