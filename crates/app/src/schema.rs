//! Schema migrations, applied on the primary at start-up.
//!
//! Each migration runs once, recorded in `schema_migrations`; a MariaDB named
//! lock serialises application servers that start at the same moment, and
//! every statement is idempotent in case a server dies half-way.

use crate::AppState;
use mysql_async::prelude::Queryable;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// (version, SQL), in order. Append only.
pub const MIGRATIONS: &[(u32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS messages (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        author VARCHAR(64) NOT NULL,
        text VARCHAR(1000) NOT NULL,
        created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
    ) ENGINE = InnoDB",
)];

/// Retries the migrations until they succeed, then marks the app ready.
pub async fn migrate_until_done(state: Arc<AppState>) {
    let mut logged = false;
    loop {
        match migrate(&state).await {
            Ok(applied) => {
                tracing::info!(applied, "schema is up to date");
                state.ready.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(error = %e, "cannot migrate the schema yet; retrying");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Applies pending migrations; returns how many ran.
async fn migrate(state: &AppState) -> Result<usize, String> {
    let (applied, _) = state
        .db
        .write(|conn| {
            Box::pin(async move {
                let locked: Option<Option<i64>> = conn
                    .query_first("SELECT GET_LOCK('webinfra_schema', 30)")
                    .await?;
                if locked.flatten() != Some(1) {
                    return Err(mysql_async::Error::Other("schema lock not granted".into()));
                }
                let result = apply(conn).await;
                conn.query_drop("DO RELEASE_LOCK('webinfra_schema')")
                    .await?;
                result
            })
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(applied)
}

async fn apply(conn: &mut mysql_async::Conn) -> mysql_async::Result<usize> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT UNSIGNED NOT NULL PRIMARY KEY,
            applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ) ENGINE = InnoDB",
    )
    .await?;
    let done: Vec<u32> = conn.query("SELECT version FROM schema_migrations").await?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        conn.query_drop(*sql).await?;
        conn.exec_drop(
            "INSERT IGNORE INTO schema_migrations (version) VALUES (?)",
            (version,),
        )
        .await?;
        applied += 1;
    }
    Ok(applied)
}
