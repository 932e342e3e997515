//! `check` for `sink-postgresql`: the declared checks, run in order with the
//! privileges the sink will use.

use hstream_io_runtime::{CheckFailure, CheckSpec, CheckType, Error, ErrorKind};
use sqlx::{ConnectOptions, PgConnection, Row};

use crate::catalog;
use crate::config::PgSinkConfig;
use crate::error::pg_error;

/// The checks, in the order they run.
pub static CHECKS: [CheckSpec; 4] = [
    CheckSpec {
        id: "connect",
        kind: CheckType::Connection,
        description: "connection to PostgreSQL",
        hint: "Check host, port, user, password, database and tlsMode, and that pg_hba.conf admits this client.",
    },
    CheckSpec {
        id: "table",
        kind: CheckType::Setup,
        description: "target table exists",
        hint: "Create the table, or fix `schema`/`table` (names are case-sensitive).",
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
        description: "INSERT, UPDATE and DELETE on the table, and access to the progress table (or CREATE on its schema) when exactlyOnce is on",
        hint: "GRANT INSERT, UPDATE, DELETE ON the table TO the user (and CREATE ON SCHEMA for the progress table), or set exactlyOnce to false.",
    },
];

fn fail(index: usize, error: Error) -> CheckFailure {
    CheckFailure::new(&CHECKS[index], error)
}

/// Runs [`CHECKS`] in order; stops at the first failure.
pub async fn check(config: &PgSinkConfig) -> Result<(), CheckFailure> {
    let (schema, table) = config.target();
    let target = format!("{schema}.{table}");
    let options = config.connect_options();
    let connect = options.connect();
    let mut conn: PgConnection =
        match tokio::time::timeout(std::time::Duration::from_secs(15), connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(fail(
                    0,
                    pg_error(
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
    let described = catalog::describe(&mut conn, &schema, &table)
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
    let quoted = crate::sql::qualified(&schema, &table);
    let row = sqlx::query(
        "SELECT has_table_privilege($1, 'INSERT'), has_table_privilege($1, 'UPDATE'), \
                has_table_privilege($1, 'DELETE'), has_schema_privilege($2, 'CREATE'), \
                to_regclass($3) IS NOT NULL",
    )
    .bind(&quoted)
    .bind(&schema)
    .bind(crate::sql::qualified(&schema, &config.progress_table))
    .fetch_one(&mut conn)
    .await
    .map_err(|e| {
        fail(
            3,
            pg_error(format!("cannot read the privileges on `{target}`"), e),
        )
    })?;
    let mut missing: Vec<String> = ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .enumerate()
        .filter(|(i, _)| !row.get::<bool, _>(*i))
        .map(|(_, p)| format!("{p} on `{target}`"))
        .collect();
    if config.exactly_once {
        let progress = format!("{schema}.{}", config.progress_table);
        let exists: bool = row.get(4);
        if exists {
            let row = sqlx::query(
                "SELECT has_table_privilege($1, 'SELECT'), has_table_privilege($1, 'INSERT'), \
                        has_table_privilege($1, 'UPDATE')",
            )
            .bind(crate::sql::qualified(&schema, &config.progress_table))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| {
                fail(
                    3,
                    pg_error(format!("cannot read the privileges on `{progress}`"), e),
                )
            })?;
            for (i, p) in ["SELECT", "INSERT", "UPDATE"].iter().enumerate() {
                if !row.get::<bool, _>(i) {
                    missing.push(format!("{p} on `{progress}`"));
                }
            }
        } else if !row.get::<bool, _>(3) {
            missing.push(format!(
                "CREATE on schema `{schema}` (for the progress table `{progress}`)"
            ));
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
