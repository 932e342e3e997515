//! [`SqliteMeta`]: the embedded [`MetaStore`], one SQLite file
//! (`<data-dir>/io-meta.sqlite`, WAL mode). Tables mirror HServer's
//! `ioTasks`, `ioTaskNames` and `ioTaskKvs`.

use std::path::Path;
use std::str::FromStr;

use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::meta::{MetaError, MetaResult, MetaStore, TaskMeta, kv_key};

/// SQLite-backed [`MetaStore`].
#[derive(Clone)]
pub struct SqliteMeta {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS io_tasks (id TEXT PRIMARY KEY, meta TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS io_task_names (name TEXT PRIMARY KEY, id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS io_task_kvs (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS io_task_kvs_task ON io_task_kvs (task_id)",
];

fn err(op: impl Into<String>) -> impl FnOnce(sqlx::Error) -> MetaError {
    let op = op.into();
    move |e| MetaError {
        op,
        message: e.to_string(),
    }
}

impl SqliteMeta {
    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &Path) -> MetaResult<Self> {
        let opened = format!("open {}", path.display());
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(err(opened.clone()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: durable across process crashes (kill -9), one fsync per checkpoint.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(err(opened.clone()))?;
        for stmt in SCHEMA {
            sqlx::query(*stmt)
                .execute(&pool)
                .await
                .map_err(err(format!("create schema in {}", path.display())))?;
        }
        Ok(Self { pool })
    }
}

impl MetaStore for SqliteMeta {
    fn put_task<'a>(&'a self, task: &'a TaskMeta) -> BoxFuture<'a, MetaResult<()>> {
        Box::pin(async move {
            let op = format!("put task {}", task.id);
            let json = serde_json::to_string(task).map_err(|e| MetaError {
                op: op.clone(),
                message: e.to_string(),
            })?;
            sqlx::query("INSERT INTO io_tasks (id, meta) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET meta = excluded.meta")
                .bind(&task.id)
                .bind(json)
                .execute(&self.pool)
                .await
                .map_err(err(op))?;
            Ok(())
        })
    }

    fn get_task<'a>(&'a self, id: &'a str) -> BoxFuture<'a, MetaResult<Option<TaskMeta>>> {
        Box::pin(async move {
            let op = format!("get task {id}");
            let row = sqlx::query("SELECT meta FROM io_tasks WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err(op.clone()))?;
            row.map(|r| decode(&op, r.get::<String, _>(0))).transpose()
        })
    }

    fn list_tasks(&self) -> BoxFuture<'_, MetaResult<Vec<TaskMeta>>> {
        Box::pin(async move {
            let op = "list tasks";
            let rows = sqlx::query("SELECT meta FROM io_tasks")
                .fetch_all(&self.pool)
                .await
                .map_err(err(op))?;
            let mut tasks: Vec<TaskMeta> = rows
                .into_iter()
                .map(|r| decode(op, r.get::<String, _>(0)))
                .collect::<MetaResult<_>>()?;
            tasks.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
            Ok(tasks)
        })
    }

    fn bind_name<'a>(&'a self, name: &'a str, id: &'a str) -> BoxFuture<'a, MetaResult<bool>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO io_task_names (name, id) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            )
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err(format!("bind name {name}")))?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn lookup_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, MetaResult<Option<String>>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT id FROM io_task_names WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(err(format!("look up name {name}")))?;
            Ok(row.map(|r| r.get::<String, _>(0)))
        })
    }

    fn unbind_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, MetaResult<()>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM io_task_names WHERE name = ?1")
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(err(format!("unbind name {name}")))?;
            Ok(())
        })
    }

    fn kv_get<'a>(
        &'a self,
        task_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, MetaResult<Option<String>>> {
        Box::pin(async move {
            let k = kv_key(task_id, key);
            let row = sqlx::query("SELECT value FROM io_task_kvs WHERE key = ?1")
                .bind(&k)
                .fetch_optional(&self.pool)
                .await
                .map_err(err(format!("get kv {k}")))?;
            Ok(row.map(|r| r.get::<String, _>(0)))
        })
    }

    fn kv_set<'a>(
        &'a self,
        task_id: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, MetaResult<()>> {
        Box::pin(async move {
            let k = kv_key(task_id, key);
            sqlx::query("INSERT INTO io_task_kvs (key, task_id, value) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .bind(&k)
                .bind(task_id)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(err(format!("set kv {k}")))?;
            Ok(())
        })
    }

    fn kv_clear<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, MetaResult<()>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM io_task_kvs WHERE task_id = ?1")
                .bind(task_id)
                .execute(&self.pool)
                .await
                .map_err(err(format!("clear kv of task {task_id}")))?;
            Ok(())
        })
    }
}

fn decode(op: &str, json: String) -> MetaResult<TaskMeta> {
    serde_json::from_str(&json).map_err(|e| MetaError {
        op: op.to_string(),
        message: format!("stored task meta is not valid: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Desired, TaskStatus};

    fn task(id: &str, name: &str) -> TaskMeta {
        TaskMeta {
            id: id.into(),
            name: name.into(),
            kind: "SOURCE".into(),
            target: "generator".into(),
            config: serde_json::json!({"stream": "s"}),
            status: TaskStatus::New,
            desired: Desired::Running,
            created_ms: 1,
            last_error: None,
            offsets: vec![],
        }
    }

    #[tokio::test]
    async fn tasks_names_and_kv_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        {
            let m = SqliteMeta::open(&path).await.unwrap();
            let mut t = task("t1", "c1");
            m.put_task(&t).await.unwrap();
            t.status = TaskStatus::Stopped;
            t.desired = Desired::Paused;
            m.put_task(&t).await.unwrap();
            assert!(m.bind_name("c1", "t1").await.unwrap());
            assert!(!m.bind_name("c1", "t2").await.unwrap(), "name taken");
            m.kv_set("t1", "offsets", "v1").await.unwrap();
            m.kv_set("t1", "offsets", "v2").await.unwrap();
            m.kv_set("t2", "offsets", "other").await.unwrap();
        }
        let m = SqliteMeta::open(&path).await.unwrap();
        let t = m.get_task("t1").await.unwrap().unwrap();
        assert_eq!(
            (t.status, t.desired),
            (TaskStatus::Stopped, Desired::Paused)
        );
        assert_eq!(m.list_tasks().await.unwrap().len(), 1);
        assert_eq!(m.lookup_name("c1").await.unwrap().as_deref(), Some("t1"));
        assert_eq!(
            m.kv_get("t1", "offsets").await.unwrap().as_deref(),
            Some("v2")
        );
        m.kv_clear("t1").await.unwrap();
        assert_eq!(m.kv_get("t1", "offsets").await.unwrap(), None);
        assert_eq!(
            m.kv_get("t2", "offsets").await.unwrap().as_deref(),
            Some("other")
        );
        m.unbind_name("c1").await.unwrap();
        assert_eq!(m.lookup_name("c1").await.unwrap(), None);
        assert!(m.get_task("nope").await.unwrap().is_none());
    }
}
