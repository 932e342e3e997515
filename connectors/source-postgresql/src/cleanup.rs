//! What a deleted task leaves behind, dropped by the `cleanup` verb (run by
//! `hstream-io serve` on DROP CONNECTOR, after the task process stopped):
//!
//! - with `slotOnDelete: drop`, the task's replication slot (a kept slot
//!   retains WAL on the server until someone drops it);
//! - with it, the publication the task created for itself: the one named
//!   after the slot (no `publication` configured) with `createPublication`
//!   on. A publication the user named may be shared and is never dropped.
//!
//! `slotOnDelete: keep` (the default) keeps both, so a new task can resume on
//! them. Idempotent: what is already gone is not an error.

use std::time::Duration;

use hstream_io_runtime::{Error, ErrorKind, Result};
use tokio_postgres::Client;

use crate::catalog;
use crate::config::{PgSourceConfig, SlotOnDelete, SnapshotMode, quote_ident};

/// How long a slot still held by the stopped task's server process is waited for.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(20);

/// What cleanup drops for `config`: the slot, and the publication if the task owns it.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The replication slot to drop.
    pub slot: Option<String>,
    /// The publication to drop.
    pub publication: Option<String>,
}

/// The plan for a task's config and id.
pub fn plan(config: &PgSourceConfig, task_id: Option<&str>) -> Plan {
    if config.slot_on_delete == SlotOnDelete::Keep
        || config.snapshot_mode == SnapshotMode::InitialOnly
    {
        // initial_only never creates a slot nor a publication.
        return Plan {
            slot: None,
            publication: None,
        };
    }
    let slot = config.slot(task_id);
    let publication = (config.publication.is_none() && config.create_publication)
        .then(|| config.publication_name(&slot));
    Plan {
        slot: Some(slot),
        publication,
    }
}

/// Drops what the plan names.
pub async fn cleanup(config: &PgSourceConfig, task_id: Option<&str>) -> Result<()> {
    let plan = plan(config, task_id);
    if plan.slot.is_none() && plan.publication.is_none() {
        tracing::info!("slotOnDelete is keep: the replication slot and publication stay");
        return Ok(());
    }
    let sql = catalog::connect(config).await?;
    if let Some(slot) = &plan.slot {
        drop_slot_when_free(&sql, slot).await?;
    }
    if let Some(publication) = &plan.publication {
        sql.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            quote_ident(publication)
        ))
        .await
        .map_err(|e| {
            crate::error::sql(format!("cannot drop publication `{publication}`"), e).with_hint(
                format!(
                    "Drop it as its owner: `DROP PUBLICATION \"{publication}\";`, then drop the connector again."
                ),
            )
        })?;
        tracing::info!(publication, "dropped the task's publication");
    }
    Ok(())
}

/// Drops `slot` once no session holds it (the stopped task's walsender may
/// linger a moment); a slot that does not exist is fine.
async fn drop_slot_when_free(sql: &Client, slot: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let Some(state) = catalog::slot_state(sql, slot).await? else {
            tracing::info!(slot, "replication slot already gone");
            return Ok(());
        };
        match state.active_pid {
            None => {
                catalog::drop_slot(sql, slot).await?;
                tracing::info!(slot, "dropped the task's replication slot");
                return Ok(());
            }
            Some(pid) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!("replication slot `{slot}` is still in use by server process {pid}"),
                )
                .with_hint(format!(
                    "Another session holds it; terminate it (`SELECT pg_terminate_backend({pid});`) and drop the connector again, or set slotOnDelete to keep."
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> PgSourceConfig {
        let mut base = serde_json::json!({"stream": "s", "host": "h", "user": "u",
            "password": "p", "database": "d", "table": "t"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn keep_drops_nothing_and_drop_takes_only_what_the_task_owns() {
        let keep = plan(&config(serde_json::json!({})), Some("T-1"));
        assert_eq!((keep.slot, keep.publication), (None, None));

        let own = plan(
            &config(serde_json::json!({"slotOnDelete": "drop"})),
            Some("T-1"),
        );
        assert_eq!(own.slot.as_deref(), Some("hstream_io_t_1"));
        assert_eq!(own.publication.as_deref(), Some("hstream_io_t_1"));

        let named = plan(
            &config(serde_json::json!({"slotOnDelete": "drop", "publication": "shared"})),
            Some("T-1"),
        );
        assert_eq!(named.slot.as_deref(), Some("hstream_io_t_1"));
        assert_eq!(named.publication, None);

        let not_created = plan(
            &config(serde_json::json!({"slotOnDelete": "drop", "createPublication": false})),
            Some("T-1"),
        );
        assert_eq!(not_created.publication, None);

        let initial_only = plan(
            &config(serde_json::json!({"slotOnDelete": "drop", "snapshotMode": "initial_only"})),
            Some("T-1"),
        );
        assert_eq!(initial_only.slot, None);
    }
}
