//! `check` for `sink-mysql`: the declared checks, run in order with the
//! privileges the sink will use.

use hstream_io_runtime::{CheckFailure, CheckSpec, CheckType, Error, ErrorKind};
use sqlx::{ConnectOptions, Executor, MySqlConnection, Row};

use crate::catalog;
use crate::config::MysqlSinkConfig;
use crate::error::mysql_error;
use crate::sql::{qualified, quote};

/// The checks, in the order they run.
pub static CHECKS: [CheckSpec; 4] = [
    CheckSpec {
        id: "connect",
        kind: CheckType::Connection,
        description: "connection to MySQL",
        hint: "Check host, port, user, password, database and tlsMode, and that the user may connect from this host.",
    },
    CheckSpec {
        id: "table",
        kind: CheckType::Setup,
        description: "target table exists",
        hint: "Create the table, or fix `database`/`table`.",
    },
    CheckSpec {
        id: "keys",
        kind: CheckType::Keys,
        description: "primary key, unique key or keyColumns identifies rows",
        hint: "Add a primary key, set keyColumns to columns covered by a unique index, or keep exactlyOnce on to append to a table without a key.",
    },
    CheckSpec {
        id: "privileges",
        kind: CheckType::Permission,
        description: "INSERT, UPDATE and DELETE on the table, and access to the progress table (or CREATE on the database) when exactlyOnce is on",
        hint: "GRANT INSERT, UPDATE, DELETE ON the table TO the user (and CREATE ON the database for the progress table), or set exactlyOnce to false.",
    },
];

fn fail(index: usize, error: Error) -> CheckFailure {
    CheckFailure::new(&CHECKS[index], error)
}

/// Runs [`CHECKS`] in order; stops at the first failure.
pub async fn check(config: &MysqlSinkConfig) -> Result<(), CheckFailure> {
    let target = format!("{}.{}", config.database, config.table);
    let options = config.connect_options();
    let connect = options.connect();
    let mut conn: MySqlConnection =
        match tokio::time::timeout(std::time::Duration::from_secs(15), connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(fail(
                    0,
                    mysql_error(
                        format!("cannot connect to {}:{}", config.host, config.port),
                        e,
                    ),
                ));
            }
            Err(_) => {
                return Err(fail(
                    0,
                    Error::new(
                        ErrorKind::Connection,
                        format!("no answer from {}:{} within 15 s", config.host, config.port),
                    ),
                ));
            }
        };
    let described = catalog::describe(&mut conn, &config.database, &config.table)
        .await
        .map_err(|e| fail(1, e))?;
    let Some((columns, indexes)) = described else {
        return Err(fail(
            1,
            Error::new(ErrorKind::Setup, format!("table `{target}` does not exist")),
        ));
    };
    let key = catalog::choose_key(&target, &columns, &indexes, config.key_columns.as_deref())
        .map_err(|e| fail(2, e))?;
    if key.is_empty() && !config.exactly_once {
        return Err(fail(
            2,
            Error::new(
                ErrorKind::Setup,
                format!(
                    "table `{target}` has no primary key or NOT NULL unique key, and exactlyOnce is off, so replays would duplicate rows"
                ),
            ),
        ));
    }
    // Preparing a statement checks the user's privileges (roles included)
    // without running it.
    let table = qualified(&config.database, &config.table);
    let first = quote(&columns[0].name);
    let mut statements = vec![
        (
            "INSERT",
            format!("INSERT INTO {table} ({first}) VALUES (?)"),
            target.clone(),
        ),
        (
            "UPDATE",
            format!("UPDATE {table} SET {first} = ? WHERE 1 = 0"),
            target.clone(),
        ),
        (
            "DELETE",
            format!("DELETE FROM {table} WHERE 1 = 0"),
            target.clone(),
        ),
    ];
    let mut missing = Vec::new();
    if config.exactly_once {
        let progress = format!("{}.{}", config.database, config.progress_table);
        let exists = sqlx::query(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        )
        .bind(&config.database)
        .bind(&config.progress_table)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| fail(3, mysql_error(format!("cannot look for `{progress}`"), e)))?
        .get::<i64, _>(0)
            > 0;
        if exists {
            let p = qualified(&config.database, &config.progress_table);
            statements.push((
                "SELECT",
                format!("SELECT record_id FROM {p} WHERE 1 = 0"),
                progress.clone(),
            ));
            statements.push((
                "INSERT",
                format!("INSERT INTO {p} (stream) VALUES (?)"),
                progress.clone(),
            ));
            statements.push((
                "UPDATE",
                format!("UPDATE {p} SET record_id = ? WHERE 1 = 0"),
                progress,
            ));
        } else if !may_create(&mut conn, &config.database).await {
            missing.push(format!(
                "CREATE on database `{}` (for the progress table `{progress}`)",
                config.database
            ));
        }
    }
    for (privilege, statement, on) in statements {
        if let Err(e) = conn
            .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
                statement,
            )))
            .await
        {
            let denied = matches!(crate::error::kind_of(&e), ErrorKind::Permission);
            if !denied {
                return Err(fail(
                    3,
                    mysql_error(format!("cannot verify {privilege} on `{on}`"), e),
                ));
            }
            missing.push(format!("{privilege} on `{on}`"));
        }
    }
    if !missing.is_empty() {
        return Err(fail(
            3,
            Error::new(
                ErrorKind::Permission,
                format!("user `{}` lacks {}", config.user, missing.join(", ")),
            ),
        ));
    }
    Ok(())
}

/// Whether `SHOW GRANTS` gives CREATE (or ALL) on `*.*` or on the database.
/// When the user has roles, grants cannot be read this way: assume yes and let
/// the run report a missing privilege.
async fn may_create(conn: &mut MySqlConnection, database: &str) -> bool {
    let Ok(rows) = sqlx::query("SHOW GRANTS").fetch_all(&mut *conn).await else {
        return true;
    };
    let on_db = format!("ON {}.*", quote(database));
    rows.iter().any(|row| {
        let grant: String = row.try_get(0).unwrap_or_default();
        let upper = grant.to_ascii_uppercase();
        let privileges = upper.split(" ON ").next().unwrap_or("");
        let scoped = grant.contains(" ON *.*") || grant.contains(&on_db);
        let role = !upper.contains(" ON ");
        role || (scoped
            && (privileges.contains("ALL PRIVILEGES")
                || privileges
                    .split(", ")
                    .any(|p| p.trim_start_matches("GRANT ") == "CREATE")))
    })
}
