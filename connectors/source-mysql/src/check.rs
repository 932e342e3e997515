//! What `check` verifies, in order, each with the SQL or setting that fixes it.

use hstream_io_runtime::{CheckFailure, CheckSpec, CheckType, Error, ErrorKind};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::config::MysqlSourceConfig;
use crate::error::{classify, connect};
use crate::types::load_schema;

/// The declared checks (also listed in the generated docs).
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        id: "connect",
        kind: CheckType::Connection,
        description: "connection and credentials",
        hint: "Check host, port, user and password, and that the server accepts connections from this host.",
    },
    CheckSpec {
        id: "log_bin",
        kind: CheckType::Setup,
        description: "binary log enabled (log_bin=ON)",
        hint: "Start the server with log_bin=mysql-bin (my.cnf [mysqld] section) and restart it.",
    },
    CheckSpec {
        id: "binlog_format",
        kind: CheckType::Setup,
        description: "row-based binlog (binlog_format=ROW)",
        hint: "Run SET GLOBAL binlog_format='ROW' and set binlog_format=ROW in my.cnf.",
    },
    CheckSpec {
        id: "binlog_row_image",
        kind: CheckType::Setup,
        description: "full row images (binlog_row_image=FULL)",
        hint: "Run SET GLOBAL binlog_row_image='FULL' and set binlog_row_image=FULL in my.cnf.",
    },
    CheckSpec {
        id: "binlog_row_metadata",
        kind: CheckType::Setup,
        description: "full row metadata (binlog_row_metadata=FULL, where the server has it)",
        hint: "Run SET GLOBAL binlog_row_metadata='FULL' and set binlog_row_metadata=FULL in my.cnf (MariaDB 10.5+, MySQL 8.0+).",
    },
    CheckSpec {
        id: "binlog_retention",
        kind: CheckType::Setup,
        description: "binlogs kept at least `minBinlogRetentionHours` (binlog_expire_logs_seconds / expire_logs_days)",
        hint: "Keep binlogs longer: SET GLOBAL binlog_expire_logs_seconds = 604800 (7 days) and the same in my.cnf, or lower minBinlogRetentionHours.",
    },
    CheckSpec {
        id: "privileges",
        kind: CheckType::Permission,
        description: "replication privileges (REPLICATION SLAVE and REPLICATION CLIENT / BINLOG MONITOR)",
        hint: "Run GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'user'@'%' (on MariaDB 10.5+: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'user'@'%').",
    },
    CheckSpec {
        id: "tables",
        kind: CheckType::Keys,
        description: "captured tables exist, are readable and have a primary key",
        hint: "Create the table with a PRIMARY KEY, and GRANT SELECT ON db.* TO 'user'@'%'.",
    },
];

fn spec(id: &str) -> &'static CheckSpec {
    CHECKS.iter().find(|c| c.id == id).unwrap_or(&CHECKS[0])
}

fn fail(id: &str, kind: ErrorKind, message: String) -> CheckFailure {
    CheckFailure::new(spec(id), Error::new(kind, message))
}

async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, CheckFailure> {
    // `name` is one of this file's constants; SHOW cannot take parameters.
    let row: Option<(String, String)> = conn
        .query_first(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(|e| {
            CheckFailure::new(
                spec("connect"),
                classify(e, format!("cannot read `{name}`")),
            )
        })?;
    Ok(row.map(|(_, v)| v))
}

async fn expect_variable(
    conn: &mut Conn,
    id: &str,
    name: &str,
    wanted: &str,
    optional: bool,
) -> Result<(), CheckFailure> {
    match variable(conn, name).await? {
        None if optional => Ok(()),
        None => Err(fail(
            id,
            ErrorKind::Setup,
            format!("the server has no `{name}` variable"),
        )),
        Some(v) if v.eq_ignore_ascii_case(wanted) => Ok(()),
        Some(v) => Err(fail(
            id,
            ErrorKind::Setup,
            format!("`{name}` is {v}, not {wanted}"),
        )),
    }
}

/// Runs [`CHECKS`] in order; stops at the first failure.
pub async fn run(config: &MysqlSourceConfig) -> Result<(), CheckFailure> {
    let mut conn = connect(config)
        .await
        .map_err(|e| CheckFailure::new(spec("connect"), e))?;
    expect_variable(&mut conn, "log_bin", "log_bin", "ON", false).await?;
    expect_variable(&mut conn, "binlog_format", "binlog_format", "ROW", false).await?;
    expect_variable(
        &mut conn,
        "binlog_row_image",
        "binlog_row_image",
        "FULL",
        false,
    )
    .await?;
    expect_variable(
        &mut conn,
        "binlog_row_metadata",
        "binlog_row_metadata",
        "FULL",
        true,
    )
    .await?;
    check_retention(&mut conn, config.min_binlog_retention_hours).await?;
    report_gtid_mode(&mut conn).await?;
    check_privileges(&mut conn).await?;
    for table in config.table_refs() {
        let schema = load_schema(&mut conn, &table)
            .await
            .map_err(|e| CheckFailure::new(spec("tables"), e))?;
        let sql = format!("SELECT 1 FROM {} LIMIT 0", schema.table.quoted());
        conn.query_drop(sql).await.map_err(|e| {
            CheckFailure::new(
                spec("tables"),
                classify(e, format!("cannot read table `{table}`")),
            )
        })?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// Seconds the server keeps a binlog file, from `binlog_expire_logs_seconds`
/// and `expire_logs_days` (whichever is set, seconds first, as MySQL 8 and
/// MariaDB 10.6+ do); `None` when binlogs are never purged automatically.
pub fn retention_seconds(expire_seconds: Option<&str>, expire_days: Option<&str>) -> Option<u64> {
    let seconds = expire_seconds.and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(s) = seconds.filter(|&s| s > 0) {
        return Some(s);
    }
    // MariaDB shows days with decimals (`0.000000`, `1.500000`).
    let days = expire_days.and_then(|v| v.trim().parse::<f64>().ok());
    days.filter(|&d| d > 0.0)
        .map(|d| (d * 86_400.0).round() as u64)
}

async fn check_retention(conn: &mut Conn, min_hours: u32) -> Result<(), CheckFailure> {
    if min_hours == 0 {
        return Ok(());
    }
    let seconds = variable(conn, "binlog_expire_logs_seconds").await?;
    let days = variable(conn, "expire_logs_days").await?;
    let Some(kept) = retention_seconds(seconds.as_deref(), days.as_deref()) else {
        return Ok(());
    };
    let wanted = u64::from(min_hours) * 3600;
    if kept >= wanted {
        return Ok(());
    }
    Err(fail(
        "binlog_retention",
        ErrorKind::Setup,
        format!(
            "the server purges binlogs after {:.1} hours (binlog_expire_logs_seconds = {kept}), less than minBinlogRetentionHours = {min_hours}: a task stopped for longer could not resume without a new snapshot",
            kept as f64 / 3600.0
        ),
    ))
}

/// Logs (check.log) whether the server runs with GTIDs: resume is by GTID
/// position then, else by binlog file and position.
async fn report_gtid_mode(conn: &mut Conn) -> Result<(), CheckFailure> {
    if let Some(mode) = variable(conn, "gtid_mode").await? {
        // MySQL: OFF, OFF_PERMISSIVE, ON_PERMISSIVE, ON.
        tracing::info!(gtid_mode = %mode, "MySQL GTID mode; resume uses GTID sets when ON, else binlog file and position");
    } else {
        // MariaDB always writes GTIDs; strict mode only changes what a replica accepts.
        let strict = variable(conn, "gtid_strict_mode")
            .await?
            .unwrap_or_default();
        let pos = variable(conn, "gtid_binlog_pos").await?.unwrap_or_default();
        tracing::info!(gtid_strict_mode = %strict, gtid_binlog_pos = %pos, "MariaDB GTIDs; resume uses the GTID position (@slave_connect_state) and the binlog file and position");
    }
    Ok(())
}

async fn check_privileges(conn: &mut Conn) -> Result<(), CheckFailure> {
    // REPLICATION CLIENT / BINLOG MONITOR: what SHOW MASTER STATUS needs; try it.
    if let Err(e) = crate::snapshot::binlog_status(conn).await {
        return Err(CheckFailure::new(
            spec("privileges"),
            classify(
                e,
                "cannot read the binlog status (REPLICATION CLIENT / BINLOG MONITOR missing)",
            ),
        ));
    }
    // REPLICATION SLAVE cannot be tried without starting a dump: read the grants.
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(|e| {
        CheckFailure::new(
            spec("privileges"),
            classify(e, "cannot read the user's grants"),
        )
    })?;
    if !has_replication_slave(&grants) {
        return Err(fail(
            "privileges",
            ErrorKind::Permission,
            "the user lacks REPLICATION SLAVE (REPLICA) on *.*".into(),
        ));
    }
    Ok(())
}

/// True when `SHOW GRANTS` output gives REPLICATION SLAVE on `*.*`, directly,
/// through ALL PRIVILEGES, or possibly through a role (not expanded: a role
/// grant passes rather than rejects a setup that may work).
pub fn has_replication_slave(grants: &[String]) -> bool {
    grants.iter().any(|g| {
        let upper = g.to_ascii_uppercase();
        let global = upper.contains(" ON *.* ");
        (global
            && (upper.contains("REPLICATION SLAVE")
                || upper.contains("REPLICATION REPLICA")
                || upper.contains("ALL PRIVILEGES")))
            || (upper.starts_with("GRANT `") && !upper.contains(" ON "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_comes_from_seconds_then_days() {
        assert_eq!(
            retention_seconds(Some("3600"), Some("7.000000")),
            Some(3600)
        );
        assert_eq!(
            retention_seconds(Some("0"), Some("1.500000")),
            Some(129_600)
        );
        assert_eq!(retention_seconds(None, Some("2")), Some(172_800));
        // Both zero: never purged, whatever the minimum.
        assert_eq!(retention_seconds(Some("0"), Some("0.000000")), None);
        assert_eq!(retention_seconds(None, None), None);
    }

    #[test]
    fn reads_replication_grants() {
        let g = |s: &str| vec![s.to_string()];
        assert!(has_replication_slave(&g(
            "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%`"
        )));
        assert!(has_replication_slave(&g(
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"
        )));
        assert!(!has_replication_slave(&g(
            "GRANT SELECT, BINLOG MONITOR ON *.* TO `cdc`@`%`"
        )));
        assert!(!has_replication_slave(&g(
            "GRANT ALL PRIVILEGES ON `shop`.* TO `cdc`@`%`"
        )));
        assert!(has_replication_slave(&g("GRANT `cdc_role` TO `cdc`@`%`")));
    }

    #[test]
    fn every_check_has_a_hint() {
        for c in CHECKS {
            assert!(c.hint.ends_with('.'), "{}", c.id);
            assert_eq!(spec(c.id).id, c.id);
        }
    }
}
