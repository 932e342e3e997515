//! What `check` verifies, in order; the same list is in the generated docs.

use hstream_io_runtime::{CheckFailure, CheckSpec, CheckType, Error, ErrorKind};
use pgwire_replication::{ReplicationClient, ReplicationConfig};
use tokio_postgres::Client;

use crate::catalog;
use crate::config::PgSourceConfig;
use crate::error;

/// The declared checks.
pub static CHECKS: [CheckSpec; 6] = [
    CheckSpec {
        id: "connect",
        kind: CheckType::Connection,
        description: "connection to the database (a SQL session, and after the REPLICATION check a replication session), with TLS per tlsMode",
        hint: "Check host, port, database, user, password and tlsMode (with verify-full: tlsCa), and that pg_hba.conf admits this host, for replication connections too.",
    },
    CheckSpec {
        id: "wal_level",
        kind: CheckType::Setup,
        description: "wal_level = logical",
        hint: "Run `ALTER SYSTEM SET wal_level = logical;` and restart PostgreSQL.",
    },
    CheckSpec {
        id: "replication_privilege",
        kind: CheckType::Permission,
        description: "the REPLICATION attribute of the user",
        hint: "Run `ALTER ROLE <user> WITH REPLICATION;` (on RDS: `GRANT rds_replication TO <user>;`).",
    },
    CheckSpec {
        id: "tables",
        kind: CheckType::Keys,
        description: "each table exists, has a primary key (or REPLICA IDENTITY FULL) and is readable",
        hint: "Create the table with a primary key (`ALTER TABLE <table> ADD PRIMARY KEY (<columns>);`, or `ALTER TABLE <table> REPLICA IDENTITY FULL;` to key records by the whole row) and `GRANT SELECT ON <table> TO <user>;`.",
    },
    CheckSpec {
        id: "publication",
        kind: CheckType::Setup,
        description: "the publication covers every table (or can be created)",
        hint: "Create it as the tables' owner: `CREATE PUBLICATION <name> FOR TABLE <tables>;`, or set createPublication to true and make the user own the tables.",
    },
    CheckSpec {
        id: "slot",
        kind: CheckType::Setup,
        description: "the replication slot is healthy, or there is room for it",
        hint: "Drop unused slots (`SELECT pg_drop_replication_slot('<slot>');`) or raise max_replication_slots; a lost slot needs snapshotMode when_needed.",
    },
];

fn fail(index: usize, error: Error) -> CheckFailure {
    CheckFailure::new(&CHECKS[index], error)
}

/// Runs the checks in order; stops at the first failure.
pub async fn check(config: &PgSourceConfig) -> Result<(), CheckFailure> {
    let client = catalog::connect(config).await.map_err(|e| fail(0, e))?;
    let wal_level = single(&client, "SHOW wal_level")
        .await
        .map_err(|e| fail(1, e))?;
    if wal_level != "logical" {
        return Err(fail(
            1,
            Error::new(
                ErrorKind::Setup,
                format!("wal_level is `{wal_level}`, not `logical`"),
            ),
        ));
    }
    let replication = single(
        &client,
        "SELECT (rolreplication OR rolsuper OR pg_has_role(current_user, 'rds_replication', 'MEMBER') IS TRUE)::text \
         FROM pg_catalog.pg_roles WHERE rolname = current_user",
    )
    .await;
    // pg_has_role fails when the role rds_replication does not exist.
    let replication = match replication {
        Ok(v) => v,
        Err(_) => single(
            &client,
            "SELECT (rolreplication OR rolsuper)::text FROM pg_catalog.pg_roles WHERE rolname = current_user",
        )
        .await
        .map_err(|e| fail(2, e))?,
    };
    if replication != "true" {
        return Err(fail(
            2,
            Error::new(
                ErrorKind::Permission,
                format!("user `{}` has no REPLICATION attribute", config.user),
            ),
        ));
    }
    // The replication session has its own connection and TLS client.
    replication_session(config).await.map_err(|e| fail(0, e))?;
    let names = config.table_names();
    for name in &names {
        let info = catalog::describe_table(&client, name)
            .await
            .map_err(|e| fail(3, e))?;
        if info.primary_key.is_empty() {
            return Err(fail(3, catalog::no_primary_key(name)));
        }
        let readable = single(
            &client,
            &format!(
                "SELECT has_table_privilege(current_user, {}::regclass, 'SELECT')::text",
                crate::config::quote_literal(&name.quoted())
            ),
        )
        .await
        .map_err(|e| fail(3, e))?;
        if readable != "true" {
            return Err(fail(
                3,
                Error::new(
                    ErrorKind::Permission,
                    format!("user `{}` cannot SELECT from `{name}`", config.user),
                ),
            ));
        }
    }
    // The default publication is named after the slot, hence the task id,
    // which `check` does not get: then it only has to be creatable.
    let slot = config.slot(None);
    let publication = config.publication_name(&slot);
    let current = catalog::publication_tables(&client, &publication)
        .await
        .map_err(|e| fail(4, e))?;
    let missing: Vec<_> = names
        .iter()
        .filter(|t| current.as_ref().is_none_or(|c| !c.contains(t)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let sql = catalog::publication_sql(&publication, current.is_some(), &missing);
        let can_create = config.create_publication
            && single(
                &client,
                &format!(
                    "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE'))::text FROM pg_catalog.pg_class c WHERE c.oid IN ({})",
                    missing
                        .iter()
                        .map(|t| format!("{}::regclass", crate::config::quote_literal(&t.quoted())))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .await
            .is_ok_and(|v| v == "true");
        if !can_create {
            return Err(fail(
                4,
                Error::new(
                    ErrorKind::Setup,
                    format!("publication `{publication}` is missing or lacks tables, and the connector cannot create it"),
                )
                .with_hint(format!("Run `{sql};` as the tables' owner, or set createPublication to true and make the user own the tables.")),
            ));
        }
    }
    // Without `slotName` the slot is named after the task id, which `check`
    // does not get: then only the room for a new slot is checked.
    let existing = match &config.slot_name {
        Some(slot) => catalog::slot_state(&client, slot)
            .await
            .map_err(|e| fail(5, e))?,
        None => None,
    };
    match existing {
        Some(state) => {
            if let Some(problem) = state.problem(&slot, &config.database) {
                return Err(fail(5, Error::new(ErrorKind::Setup, problem)));
            }
        }
        None => {
            let room = single(
                &client,
                "SELECT (count(*) < current_setting('max_replication_slots')::int)::text FROM pg_catalog.pg_replication_slots",
            )
            .await
            .map_err(|e| fail(5, e))?;
            if room != "true" {
                return Err(fail(
                    5,
                    Error::new(
                        ErrorKind::Setup,
                        "every replication slot is in use (max_replication_slots)",
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Opens a replication session (as the task does, TLS included), runs
/// IDENTIFY_SYSTEM on it and closes it.
async fn replication_session(config: &PgSourceConfig) -> hstream_io_runtime::Result<()> {
    let tls = crate::tls::replication(config)?;
    let slot = config.slot(None);
    let repl_config = ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        config.password.expose().to_string(),
        config.database.clone(),
        slot.clone(),
        config.publication_name(&slot),
    )
    .with_port(config.port)
    .with_tls(tls.config.clone())
    .with_application_name("hstream-io source-postgresql check");
    let what = || {
        format!(
            "cannot open a replication session to PostgreSQL at {}:{} (database `{}`, user `{}`)",
            config.host, config.port, config.database, config.user
        )
    };
    let mut repl = ReplicationClient::connect_gated(repl_config)
        .await
        .map_err(|e| error::replication(what(), e))?;
    repl.identify_system()
        .await
        .map_err(|e| error::replication(what(), e))?;
    // Dropping a gated client before `start` ends the session.
    drop(repl);
    Ok(())
}

async fn single(client: &Client, sql: &str) -> hstream_io_runtime::Result<String> {
    let rows = catalog::simple_rows(client, sql, "cannot run a check query").await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .flatten()
        .unwrap_or_default())
}
