//! `ddlPolicy`: what a change to a captured table's columns does.
//!
//! pgoutput sends a Relation message (the table's columns as of that point of
//! the WAL) before the first change of a session and again after any change
//! to the table's definition. [`DdlGuard`] compares each one with the last
//! one seen for the table: under `evolve`/`ignore` a difference is logged and
//! followed; under `strict` the task stops before the first change written
//! with the new columns.
//!
//! The first Relation of a session has nothing to compare with (the catalog
//! read at start describes the table now, not at the resume point of the
//! WAL), so a strict stop is remembered in the KV (`postgresql_ddl_stop`):
//! after a restart, meeting the same table with the same new columns stops
//! the task again until the policy is changed.

use std::collections::HashMap;

use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use serde::{Deserialize, Serialize};

use crate::config::{DdlPolicy, TableName};

/// KV key of the remembered strict stop (JSON of [`DdlStop`], or `null`).
pub const DDL_STOP_KEY: &str = "postgresql_ddl_stop";

/// A column as a Relation message describes it: name and type OID.
pub type Column = (String, u32);

/// Where `strict` stopped the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DdlStop {
    /// `schema.table`.
    pub table: String,
    /// Columns before the change (empty when only known from an earlier run).
    pub before: Vec<Column>,
    /// Columns after it.
    pub after: Vec<Column>,
    /// The last position sent before the change (the stream stops after it).
    pub after_lsn: String,
}

impl DdlStop {
    /// The error the task stops with.
    pub fn error(&self) -> Error {
        let names = |cols: &[Column]| {
            cols.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let before = if self.before.is_empty() {
            "its earlier columns".to_string()
        } else {
            format!("({})", names(&self.before))
        };
        Error::new(
            ErrorKind::Setup,
            format!(
                "the columns of captured table `{}` changed after LSN {} (ddlPolicy strict): {before} → ({})",
                self.table,
                self.after_lsn,
                names(&self.after)
            ),
        )
        .with_hint("The task stops here until told otherwise: set ddlPolicy to `evolve` to follow the change, then restart it.")
    }
}

/// Tracks the columns of each captured table as the stream announces them.
pub struct DdlGuard {
    policy: DdlPolicy,
    known: HashMap<TableName, Vec<Column>>,
    /// A strict stop of an earlier run, until its table is met again.
    remembered: Option<DdlStop>,
}

impl DdlGuard {
    /// The guard for `policy`, with the stop an earlier run remembered (kept
    /// under `strict`, forgotten otherwise).
    pub async fn load(policy: DdlPolicy, ctx: &SourceContext) -> Result<Self> {
        let stored = ctx.kv().get(DDL_STOP_KEY).await?;
        let remembered: Option<DdlStop> = stored
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let remembered = match (policy, remembered) {
            (DdlPolicy::Strict, stop) => stop,
            (_, Some(stop)) => {
                tracing::info!(table = %stop.table, "following the column change a strict run stopped at (ddlPolicy is no longer strict)");
                ctx.kv().set(DDL_STOP_KEY, "null".into()).await?;
                None
            }
            (_, None) => None,
        };
        Ok(Self {
            policy,
            known: HashMap::new(),
            remembered,
        })
    }

    /// A Relation message of captured `table` with `columns`, after the
    /// position `sent` was handed to the runtime: `Some(stop)` when the task
    /// must stop here.
    pub fn relation(
        &mut self,
        table: &TableName,
        columns: &[Column],
        sent: &str,
    ) -> Option<DdlStop> {
        let name = table.to_string();
        if let Some(stop) = &self.remembered
            && stop.table == name
        {
            if stop.after == columns {
                return Some(stop.clone());
            }
            // Still before the change (older columns): compare from here.
            if !self.known.contains_key(table) {
                self.known.insert(table.clone(), columns.to_vec());
                return None;
            }
        }
        let before = match self.known.insert(table.clone(), columns.to_vec()) {
            Some(before) if before != columns => before,
            _ => return None,
        };
        if self.policy == DdlPolicy::Strict {
            // Not followed: the next Relation is compared with the old columns.
            self.known.insert(table.clone(), before.clone());
            return Some(DdlStop {
                table: name,
                before,
                after: columns.to_vec(),
                after_lsn: sent.to_string(),
            });
        }
        tracing::info!(
            table = %name,
            before = ?before.iter().map(|c| &c.0).collect::<Vec<_>>(),
            after = ?columns.iter().map(|c| &c.0).collect::<Vec<_>>(),
            "table columns changed; records carry the new columns (ddlPolicy {:?})",
            self.policy
        );
        None
    }

    /// Remembers `stop` in the KV so a restart stops at it again.
    pub async fn remember(ctx: &SourceContext, stop: &DdlStop) -> Result<()> {
        let text = serde_json::to_string(stop).expect("a DdlStop always encodes");
        ctx.kv().set(DDL_STOP_KEY, text).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableName {
        TableName {
            schema: "public".into(),
            name: "t".into(),
        }
    }

    fn cols(names: &[&str]) -> Vec<Column> {
        names.iter().map(|n| ((*n).to_string(), 23)).collect()
    }

    fn guard(policy: DdlPolicy, remembered: Option<DdlStop>) -> DdlGuard {
        DdlGuard {
            policy,
            known: HashMap::new(),
            remembered,
        }
    }

    #[test]
    fn evolve_follows_and_strict_stops_at_a_changed_relation() {
        let mut g = guard(DdlPolicy::Evolve, None);
        assert_eq!(g.relation(&t(), &cols(&["id"]), "0/1"), None);
        assert_eq!(
            g.relation(&t(), &cols(&["id"]), "0/2"),
            None,
            "same columns"
        );
        assert_eq!(g.relation(&t(), &cols(&["id", "v"]), "0/3"), None);

        let mut g = guard(DdlPolicy::Strict, None);
        assert_eq!(g.relation(&t(), &cols(&["id"]), "0/1"), None);
        let stop = g.relation(&t(), &cols(&["id", "v"]), "0/3").unwrap();
        assert_eq!(
            (stop.before, stop.after, stop.after_lsn.as_str()),
            (cols(&["id"]), cols(&["id", "v"]), "0/3")
        );
        // A type change is a change too.
        let mut g = guard(DdlPolicy::Strict, None);
        g.relation(&t(), &[("id".into(), 23)], "0/1");
        assert!(g.relation(&t(), &[("id".into(), 20)], "0/2").is_some());
    }

    #[test]
    fn a_remembered_stop_stops_again_only_at_its_new_columns() {
        let stop = DdlStop {
            table: "public.t".into(),
            before: cols(&["id"]),
            after: cols(&["id", "v"]),
            after_lsn: "0/3".into(),
        };
        // Resumed after the change: the first Relation already has the new columns.
        let mut g = guard(DdlPolicy::Strict, Some(stop.clone()));
        assert_eq!(
            g.relation(&t(), &cols(&["id", "v"]), "0/3"),
            Some(stop.clone())
        );
        // Resumed before it: old columns first, then the change.
        let mut g = guard(DdlPolicy::Strict, Some(stop.clone()));
        assert_eq!(g.relation(&t(), &cols(&["id"]), "0/2"), None);
        assert_eq!(g.relation(&t(), &cols(&["id", "v"]), "0/3"), Some(stop));
    }
}
