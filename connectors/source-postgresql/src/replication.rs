//! The task's life: one slot per task, created once (exporting the snapshot
//! the initial load reads) and reused on every restart; pgoutput decoded into
//! records; the confirmed flush LSN taken only from committed positions.
//!
//! Position (the runtime's `source_position` KV key): `{"lsn":"0/16B3748"}`,
//! the end LSN of the last transaction whose records HStream acknowledged (or
//! the slot's consistent point right after the snapshot, or the WAL end of a
//! keepalive while nothing was in flight). While the snapshot runs it is the
//! snapshot's progress ([`crate::snapshot::progress_position`]); its runs are
//! in the KV under [`crate::resume::SNAPSHOT_STATE_KEY`]. `initial_only`
//! stores `{"snapshot":"done"}` at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use hstream_io_runtime::retry::Reconnects;
use hstream_io_runtime::stream::{PayloadWriter, Record};
use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::catalog::{self, TableInfo};
use crate::config::{
    PgSourceConfig, SlotOnDelete, SnapshotMode, TableName, TruncatePolicy, quote_ident,
};
use crate::ddl::DdlGuard;
use crate::error;
use crate::pgoutput::{self, Cell, Message};
use crate::record::{Target, encoding};
use crate::resume::{ColumnOrder, ResumeFilter, Seen, SnapshotState};
use crate::snapshot::{self, Progress, Snapshot};
use crate::types::{SESSION_OPTIONS, TypeCache};

/// Records buffered in a transaction before they are sent without a position.
const MAX_BUFFERED_RECORDS: usize = 1000;

/// How long the change loop pauses when it has taken every change the
/// replication reader had decoded, in the middle of a stream: the changes
/// PostgreSQL sends meanwhile are then taken in one burst instead of one
/// wake-up (and thread hand-off) each. Bounds the latency it adds.
const COALESCE: Duration = Duration::from_millis(1);

/// Records waiting for the next send, grouped by stream in arrival order
/// (one group per run of records of the same stream).
#[derive(Default)]
struct Buffer {
    groups: Vec<(String, Vec<Record>)>,
    len: usize,
}

impl Buffer {
    /// Appends `record` of `stream` (the stream name is copied only when it
    /// starts a new group).
    fn push(&mut self, stream: &str, record: Record) {
        match self.groups.last_mut() {
            Some((s, records)) if s == stream => records.push(record),
            _ => {
                let mut records = Vec::with_capacity(MAX_BUFFERED_RECORDS.min(64));
                records.push(record);
                self.groups.push((stream.to_string(), records));
            }
        }
        self.len += 1;
    }

    /// The groups, emptying the buffer; the first `skip` records are left out.
    fn take(&mut self, skip: usize) -> Vec<(String, Vec<Record>)> {
        self.len = 0;
        let mut groups = std::mem::take(&mut self.groups);
        let mut skip = skip;
        for (_, records) in &mut groups {
            if skip == 0 {
                break;
            }
            let n = skip.min(records.len());
            records.drain(..n);
            skip -= n;
        }
        groups.retain(|(_, records)| !records.is_empty());
        groups
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.len = 0;
    }
}

/// The position after `lsn`.
fn position(lsn: Lsn) -> Value {
    json!({ "lsn": lsn.to_pg_string() })
}

/// A position inside a large transaction: the last commit end plus how many
/// records of the transaction ending at `txn` (its final LSN) were sent. A
/// resume there skips exactly those records of that transaction.
fn partial_position(lsn: Lsn, txn: Lsn, sent: u64) -> Value {
    json!({ "lsn": lsn.to_pg_string(), "txn": txn.to_pg_string(), "sent": sent })
}

/// The transaction and record count of a [`partial_position`].
fn position_partial(position: Option<&Value>) -> Option<(Lsn, u64)> {
    let position = position?;
    let txn = Lsn::parse(position.get("txn")?.as_str()?).ok()?;
    Some((txn, position.get("sent")?.as_u64()?))
}

/// The LSN of a stored position.
fn position_lsn(position: Option<&Value>) -> Option<Lsn> {
    position?
        .get("lsn")?
        .as_str()
        .and_then(|s| Lsn::parse(s).ok())
}

/// What to do with the slot at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Stream from the stored position on the existing slot.
    Resume(Lsn),
    /// Stream on an existing slot that has no stored position (`never`).
    Reuse,
    /// Create the slot; read the snapshot it exports first when `true`.
    Create { snapshot: bool },
    /// Continue an unfinished snapshot on the existing slot after its last committed chunk.
    ResumeSnapshot,
}

/// Decides the plan; `drop_first` when an unusable slot must be dropped.
/// `resumable`: a snapshot of this slot was started (its state is stored).
fn plan(
    mode: SnapshotMode,
    stored: Option<Lsn>,
    slot: Option<&catalog::SlotState>,
    problem: Option<String>,
    slot_name: &str,
    resumable: bool,
) -> Result<(Plan, bool)> {
    let wants_snapshot = !matches!(mode, SnapshotMode::Never);
    match (stored, slot, problem) {
        (Some(lsn), Some(_), None) => Ok((Plan::Resume(lsn), false)),
        (Some(_), existing, problem) => {
            let cause = problem.unwrap_or_else(|| {
                format!("replication slot `{slot_name}` does not exist (dropped by hand, or lost in a failover)")
            });
            if mode == SnapshotMode::WhenNeeded {
                tracing::warn!(
                    slot = slot_name,
                    cause,
                    "re-reading every table (snapshotMode when_needed)"
                );
                Ok((Plan::Create { snapshot: true }, existing.is_some()))
            } else {
                Err(Error::new(
                    ErrorKind::Setup,
                    format!("{cause}; changes since the last committed position cannot be read"),
                )
                .with_hint(format!(
                    "Set snapshotMode to when_needed to re-read the tables and continue (rows are sent again), or drop the slot (`SELECT pg_drop_replication_slot('{slot_name}');`) and restart. To avoid it, raise max_slot_wal_keep_size."
                )))
            }
        }
        (None, Some(_), None) if !wants_snapshot => Ok((Plan::Reuse, false)),
        (None, Some(_), None) if resumable => Ok((Plan::ResumeSnapshot, false)),
        // A slot whose snapshot state was never stored (a crash right after
        // creating it), or an unusable slot: start over with a fresh slot.
        // Nothing was confirmed on the old slot past its creation, so
        // nothing is lost.
        (None, Some(_), _) => Ok((
            Plan::Create {
                snapshot: wants_snapshot,
            },
            true,
        )),
        (None, None, _) => Ok((
            Plan::Create {
                snapshot: wants_snapshot,
            },
            false,
        )),
    }
}

/// Runs the source until shutdown (or the end of an `initial_only` snapshot).
pub async fn run(config: PgSourceConfig, ctx: SourceContext) -> Result<()> {
    let sql = catalog::connect(&config).await?;
    let types = catalog::load_types(&sql).await?;
    let names = config.table_names();
    let mut infos = Vec::with_capacity(names.len());
    for name in &names {
        let info = catalog::describe_table(&sql, name).await?;
        if info.primary_key.is_empty() {
            return Err(catalog::no_primary_key(name));
        }
        if info.whole_row_key {
            tracing::info!(table = %name, "no primary key, REPLICA IDENTITY FULL: records are keyed by the whole row");
        }
        infos.push(info);
    }
    let targets: Vec<Target> = infos
        .iter()
        .map(|info| target_of(&config, info, &info.columns, &[], &types))
        .collect();
    let reader = Snapshot {
        sql: &sql,
        targets: &targets,
        infos: &infos,
        chunk_rows: config.snapshot_chunk_size as usize,
        batch_rows: config.snapshot_batch_rows as usize,
        ctx: &ctx,
    };

    if config.snapshot_mode == SnapshotMode::InitialOnly {
        if ctx
            .start_position()
            .and_then(|p| p.get("snapshot"))
            .is_some_and(|s| s == "done")
        {
            tracing::info!("snapshot already done (snapshotMode initial_only)");
            return Ok(());
        }
        let progress = Progress::from_position(ctx.start_position(), names.len())
            .unwrap_or_else(|| Progress::start(None, names.len()));
        let outcome = reader.read(None, progress, None).await?;
        if !outcome.interrupted {
            ctx.send(
                &targets[0].stream,
                Vec::new(),
                Some(json!({"snapshot": "done"})),
            )
            .await?;
            tracing::info!(
                rows = outcome.rows,
                "snapshot done (snapshotMode initial_only)"
            );
        }
        return Ok(());
    }

    let slot = config.slot(ctx.task_id());
    let publication = config.publication_name(&slot);
    catalog::ensure_publication(&sql, &publication, &names, config.create_publication).await?;
    let slot_state = wait_until_slot_is_free(&sql, &slot, &ctx).await?;
    let problem = slot_state
        .as_ref()
        .and_then(|s| s.problem(&slot, &config.database));
    let table_list: Vec<String> = names.iter().map(ToString::to_string).collect();
    // The snapshot state of this slot, if one was started with these tables.
    let snapshot_state = snapshot::load_state(&ctx)
        .await?
        .filter(|s| s.slot == slot && s.tables == table_list);
    // A position older than the state's consistent point belongs to an
    // earlier slot (re-snapshot after `when_needed`): not a resume point.
    let stored = position_lsn(ctx.start_position()).filter(|lsn| {
        snapshot_state
            .as_ref()
            .is_none_or(|s| *lsn >= s.consistent_lsn())
    });
    if let (Some(lsn), Some(s)) = (stored, slot_state.as_ref()) {
        tracing::info!(slot, position = %lsn, confirmed_flush_lsn = ?s.confirmed_flush_lsn, "resuming on the existing slot");
    }
    let (plan, drop_first) = plan(
        config.snapshot_mode,
        stored,
        slot_state.as_ref(),
        problem,
        &slot,
        snapshot_state.is_some(),
    )?;
    if drop_first {
        tracing::info!(slot, "dropping the unusable or half-initialised slot");
        catalog::drop_slot(&sql, &slot).await?;
    }

    let start = match plan {
        Plan::Resume(lsn) => lsn,
        _ => Lsn(0),
    };
    // Kept until `run` returns: the session reads tlsCa's file when it connects.
    let tls = crate::tls::replication(&config)?;
    // A session streaming from `start` that has confirmed `ack` (never ahead
    // of what HStream acknowledged).
    let session = |start: Lsn, ack: Lsn| {
        ReplicationConfig::new(
            config.host.clone(),
            config.user.clone(),
            config.password.expose().to_string(),
            config.database.clone(),
            slot.clone(),
            publication.clone(),
        )
        .with_port(config.port)
        .with_tls(tls.config.clone())
        .with_options(SESSION_OPTIONS)
        .with_start_lsn(start)
        .with_ack_lsn(ack)
        .with_status_interval(Duration::from_secs(config.status_interval_seconds.into()))
        .with_application_name("hstream-io source-postgresql")
    };
    let mut repl = ReplicationClient::connect_gated(session(start, start))
        .await
        .map_err(|e| error::replication("cannot open the replication session", e))?;

    let mut start = start;
    let mut filter_state = snapshot_state.clone();
    match plan {
        Plan::Create {
            snapshot: with_snapshot,
        } => {
            let (consistent, exported) = create_slot(&mut repl, &slot, with_snapshot).await?;
            if let Some(name) = exported {
                let mut state = SnapshotState {
                    slot: slot.clone(),
                    consistent_point: consistent.to_pg_string(),
                    tables: table_list.clone(),
                    runs: Vec::new(),
                };
                let progress = Progress::start(Some(state.consistent_point.clone()), names.len());
                let outcome = reader.read(Some(&name), progress, Some(&mut state)).await?;
                if outcome.interrupted {
                    return interrupted(repl, outcome.rows).await;
                }
                tracing::info!(rows = outcome.rows, "snapshot done; streaming changes");
                filter_state = Some(state);
            }
            ctx.send(&targets[0].stream, Vec::new(), Some(position(consistent)))
                .await?;
            // Stored now: a restart must not take the snapshot again (it could not emit the
            // deletes made since).
            ctx.checkpoint(&position(consistent)).await?;
            start = consistent;
        }
        Plan::ResumeSnapshot => {
            let mut state = snapshot_state.clone().expect("resumable only with a state");
            let consistent = state.consistent_lsn();
            let progress = Progress::from_position(ctx.start_position(), names.len())
                .filter(|p| p.consistent_point.as_deref() == Some(state.consistent_point.as_str()))
                .unwrap_or_else(|| {
                    Progress::start(Some(state.consistent_point.clone()), names.len())
                });
            tracing::info!(
                slot,
                consistent_point = %consistent,
                table = progress.point.table,
                after = ?progress.point.after,
                "resuming the snapshot after its last committed chunk, in a new snapshot"
            );
            let outcome = reader.read(None, progress, Some(&mut state)).await?;
            if outcome.interrupted {
                return interrupted(repl, outcome.rows).await;
            }
            tracing::info!(rows = outcome.rows, "snapshot done; streaming changes");
            ctx.send(&targets[0].stream, Vec::new(), Some(position(consistent)))
                .await?;
            // Stored now: a restart must not take the snapshot again (it could not emit the
            // deletes made since).
            ctx.checkpoint(&position(consistent)).await?;
            start = consistent;
            filter_state = Some(state);
        }
        Plan::Resume(_) | Plan::Reuse => {}
    }
    // A snapshot's chunks are free now: give their pages back before streaming for good.
    hstream_io_runtime::release_free_memory();
    let filter = match &filter_state {
        Some(state) => ResumeFilter::new(state)?.filter(|f| f.horizon() > start),
        None => None,
    };
    if let Some(filter) = &filter {
        tracing::info!(
            until = %filter.horizon(),
            "changes already read by a resumed snapshot are skipped until this LSN"
        );
    }

    repl.start()
        .await
        .map_err(|e| error::replication("cannot start replication", e))?;
    repl.wait_started()
        .await
        .map_err(|e| error::replication(format!("cannot start replication on slot `{slot}`"), e))?;
    tracing::info!(slot, publication, start = %start, "streaming changes");

    // A stored position inside a large transaction: skip what was sent of it.
    let resume_skip = match plan {
        Plan::Resume(lsn) if position_lsn(ctx.start_position()) == Some(lsn) => {
            position_partial(ctx.start_position())
        }
        _ => None,
    };
    let mut stream = ChangeStream {
        config: &config,
        sql,
        types,
        infos: infos.iter().map(|i| (i.name.clone(), i)).collect(),
        orders: infos
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.key_columns.iter().map(ColumnOrder::of).collect(),
                )
            })
            .collect(),
        filter,
        seen: Seen::default(),
        skipped: AtomicU64::new(0),
        truncates_skipped: 0,
        commit_unix_ms: None,
        relations: HashMap::new(),
        ctx: &ctx,
        buffered: Buffer::default(),
        writer: PayloadWriter::new(encoding(config.format)),
        in_transaction: false,
        last_position: start,
        ddl: DdlGuard::load(config.ddl_policy, &ctx).await?,
        default_stream: targets[0].stream.clone(),
        txn: None,
        txn_records: 0,
        to_skip: 0,
        resume_skip,
    };
    // Stream; a lost session (server restart, network) is opened again from
    // the last position handed to the runtime, with a fresh SQL session.
    let mut reconnects = Reconnects::default();
    loop {
        let result = stream.run(&mut repl).await;
        let _ = repl.shutdown().await;
        let mut error = match result {
            Ok(()) => break,
            Err(e) => e,
        };
        loop {
            if ctx.shutdown().is_triggered() {
                // Stopping anyway: what was sent is committed by the runtime.
                tracing::info!(error = %error, "replication session lost while stopping");
                return Ok(());
            }
            if !error.kind().is_retryable() {
                return Err(error);
            }
            let from = stream.restart_point();
            tracing::warn!(error = %error, from = %from, "replication session lost");
            match reconnects.next(ctx.shutdown()).await {
                Some(attempt) => tracing::info!(attempt, from = %from, "reconnecting"),
                None if ctx.shutdown().is_triggered() => return Ok(()),
                None => return Err(error),
            }
            let acked = position_lsn(ctx.committed_positions().borrow().as_ref()).unwrap_or(start);
            match reopen(&config, &slot, session(from, acked.min(from))).await {
                Ok((sql, new_repl)) => {
                    stream.sql = sql;
                    repl = new_repl;
                    reconnects.connected();
                    tracing::info!(slot, from = %from, "streaming changes again");
                    break;
                }
                Err(e) => error = e,
            }
        }
    }
    if config.slot_on_delete == SlotOnDelete::Drop && !ctx.shutdown().is_triggered() {
        catalog::drop_slot(&stream.sql, &slot).await?;
    }
    Ok(())
}

/// A new SQL session and a started replication session (after a lost one).
async fn reopen(
    config: &PgSourceConfig,
    slot: &str,
    session: ReplicationConfig,
) -> Result<(Client, ReplicationClient)> {
    let sql = catalog::connect(config).await?;
    let mut repl = ReplicationClient::connect_gated(session)
        .await
        .map_err(|e| error::replication("cannot open the replication session", e))?;
    repl.start()
        .await
        .map_err(|e| error::replication("cannot start replication", e))?;
    repl.wait_started()
        .await
        .map_err(|e| error::replication(format!("cannot start replication on slot `{slot}`"), e))?;
    Ok((sql, repl))
}

/// A snapshot stopped by the shutdown: it resumes on the next run.
async fn interrupted(mut repl: ReplicationClient, rows: u64) -> Result<()> {
    tracing::info!(
        rows,
        "snapshot interrupted by the shutdown; it resumes after the last committed chunk"
    );
    let _ = repl.shutdown().await;
    Ok(())
}

/// Creates the slot; its consistent point and exported snapshot name.
async fn create_slot(
    repl: &mut ReplicationClient,
    slot: &str,
    export: bool,
) -> Result<(Lsn, Option<String>)> {
    let mode = if export {
        "EXPORT_SNAPSHOT"
    } else {
        "NOEXPORT_SNAPSHOT"
    };
    let rows = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {mode}",
            quote_ident(slot)
        ))
        .await
        .map_err(|e| {
            error::replication(format!("cannot create replication slot `{slot}`"), e)
                .with_hint("The user needs the REPLICATION attribute (`ALTER ROLE <user> WITH REPLICATION;`), and max_replication_slots must have room.")
        })?;
    let cell = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i))
            .and_then(|c| c.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let consistent = cell(1).and_then(|s| Lsn::parse(&s).ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            "CREATE_REPLICATION_SLOT answered no consistent point",
        )
    })?;
    tracing::info!(slot, consistent_point = %consistent, "created replication slot");
    if !export {
        return Ok((consistent, None));
    }
    let name = cell(2).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            "CREATE_REPLICATION_SLOT exported no snapshot",
        )
    })?;
    Ok((consistent, Some(name)))
}

/// How long a slot held by another session (typically the server process of
/// a previous run that crashed and is not yet gone) is waited for.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(30);

/// The slot's state once no session holds it (or `None` if it does not exist).
async fn wait_until_slot_is_free(
    sql: &Client,
    slot: &str,
    ctx: &SourceContext,
) -> Result<Option<catalog::SlotState>> {
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let state = catalog::slot_state(sql, slot).await?;
        let Some(pid) = state.as_ref().and_then(|s| s.active_pid) else {
            return Ok(state);
        };
        if tokio::time::Instant::now() >= deadline || ctx.shutdown().is_triggered() {
            return Err(Error::new(
                ErrorKind::Setup,
                format!("replication slot `{slot}` is in use by server process {pid}"),
            )
            .with_hint("Another task (or an earlier run of this one) holds the slot; stop it, terminate that process (`SELECT pg_terminate_backend(<pid>);`), or set a different slotName."));
        }
        tracing::info!(slot, pid, "waiting for the slot to be released");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn target_of(
    config: &PgSourceConfig,
    info: &TableInfo,
    columns: &[(String, u32)],
    fallback_key: &[bool],
    types: &TypeCache,
) -> Target {
    Target::new(
        info.name.clone(),
        config.stream_for(&info.name),
        columns,
        &info.primary_key,
        fallback_key,
        types,
        config.shared_stream(),
        config.format,
    )
}

struct ChangeStream<'a> {
    config: &'a PgSourceConfig,
    sql: Client,
    types: TypeCache,
    infos: HashMap<TableName, &'a TableInfo>,
    /// Each table's primary-key order.
    orders: HashMap<TableName, Vec<ColumnOrder>>,
    /// Skips what a resumed snapshot already read (until its horizon).
    filter: Option<ResumeFilter>,
    /// The runs whose snapshot holds the current transaction.
    seen: Seen,
    /// Changes skipped by the filter.
    skipped: AtomicU64,
    /// TRUNCATEs not written to the stream (`truncate: skip`).
    truncates_skipped: u64,
    /// Commit time (unix ms) of the transaction being streamed.
    commit_unix_ms: Option<i64>,
    /// Relation OID → target, from Relation messages (`None`: not captured).
    relations: HashMap<u32, Option<Target>>,
    ctx: &'a SourceContext,
    buffered: Buffer,
    /// Writes each change's record payload (reused).
    writer: PayloadWriter,
    in_transaction: bool,
    /// The newest position handed to `send`.
    last_position: Lsn,
    /// `ddlPolicy`: column changes of captured tables.
    ddl: DdlGuard,
    /// Final LSN of the transaction being streamed.
    txn: Option<Lsn>,
    /// Records of that transaction handed to `flush` so far (sent or skipped).
    txn_records: u64,
    /// Records of that transaction still to skip (sent before a restart).
    to_skip: u64,
    /// Transaction (final LSN) and records of it sent before a restart.
    resume_skip: Option<(Lsn, u64)>,
    default_stream: String,
}

impl ChangeStream<'_> {
    async fn run(&mut self, repl: &mut ReplicationClient) -> Result<()> {
        let mut committed = self.ctx.committed_positions();
        let shutdown = self.ctx.shutdown().clone();
        let mut committed_closed = false;
        // Events taken from this session, against the reader's count of
        // events handed over: equal when none is waiting.
        let metrics = repl.metrics();
        let mut received = 0u64;
        enum Next {
            Stop,
            Committed,
            Event(pgwire_replication::Result<Option<ReplicationEvent>>),
        }
        loop {
            // Fast path: what is ready already is taken without building the
            // select below (its futures cost more than a small change's record).
            let ready = if shutdown.is_triggered() {
                Some(Next::Stop)
            } else if !committed_closed && committed.has_changed().unwrap_or(true) {
                committed_closed = committed.has_changed().is_err();
                Some(Next::Committed)
            } else {
                repl.recv().now_or_never().map(Next::Event)
            };
            let next = match ready {
                Some(next) => next,
                None => tokio::select! {
                    biased;
                    _ = shutdown.wait() => Next::Stop,
                    changed = committed.changed(), if !committed_closed => {
                        committed_closed = changed.is_err();
                        Next::Committed
                    }
                    event = repl.recv() => Next::Event(event),
                },
            };
            match next {
                Next::Stop => return Ok(()),
                Next::Committed => {
                    if let Some(lsn) = position_lsn(committed.borrow_and_update().as_ref()) {
                        // Only what HStream acknowledged is confirmed to PostgreSQL.
                        repl.update_applied_lsn(lsn);
                    }
                }
                Next::Event(event) => {
                    let event = event
                        .map_err(|e| error::replication("the replication stream failed", e))?;
                    let Some(event) = event else {
                        return Err(Error::new(
                            ErrorKind::Connection,
                            "the replication stream ended",
                        ));
                    };
                    received += 1;
                    let change = !matches!(event, ReplicationEvent::KeepAlive { .. });
                    self.handle(event).await?;
                    if change && metrics.events_forwarded() <= received {
                        tokio::select! {
                            biased;
                            _ = shutdown.wait() => return Ok(()),
                            _ = tokio::time::sleep(COALESCE) => {}
                        }
                    }
                }
            }
        }
    }

    async fn handle(&mut self, event: ReplicationEvent) -> Result<()> {
        match event {
            ReplicationEvent::Begin {
                xid,
                final_lsn,
                commit_time_micros,
            } => {
                self.in_transaction = true;
                self.commit_unix_ms = Some(unix_ms(commit_time_micros));
                self.txn = Some(final_lsn);
                self.txn_records = 0;
                self.to_skip = match self.resume_skip {
                    Some((txn, sent)) if txn == final_lsn => {
                        tracing::info!(transaction = %final_lsn, sent, "resuming inside a large transaction: its first records were sent already");
                        sent
                    }
                    _ => 0,
                };
                if self.resume_skip.is_some_and(|(txn, _)| final_lsn >= txn) {
                    self.resume_skip = None;
                }
                if let Some(filter) = &self.filter {
                    if final_lsn >= filter.horizon() {
                        tracing::info!(
                            skipped = self.skipped.load(Ordering::Relaxed),
                            "past the resumed snapshot's horizon; no more changes are skipped"
                        );
                        self.filter = None;
                        self.seen = Seen::default();
                    } else {
                        self.seen = filter.seen_by(xid, final_lsn);
                    }
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                self.in_transaction = false;
                self.flush(Some(end_lsn)).await?;
                self.txn = None;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Nothing in flight: let the slot advance past WAL that holds
                // nothing for us (idle or filtered databases), in order
                // behind everything sent before.
                if !self.in_transaction && self.buffered.len == 0 && wal_end > self.last_position {
                    self.flush(Some(wal_end)).await?;
                }
            }
            ReplicationEvent::XLogData { data, .. } => {
                // A full buffer is sent before the next change, not right
                // after it fills: a transaction of exactly that many rows
                // then goes out in one send, with its commit position.
                if self.buffered.len >= MAX_BUFFERED_RECORDS {
                    self.flush(None).await?;
                }
                let message = pgoutput::decode(&data).map_err(|e| {
                    Error::new(ErrorKind::Protocol, "cannot decode a pgoutput message")
                        .with_source(e)
                })?;
                self.apply(message).await?;
            }
            ReplicationEvent::Message { .. } => {}
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    async fn apply(&mut self, message: Message<'_>) -> Result<()> {
        match message {
            Message::Relation(rel) => {
                let name = TableName {
                    schema: rel.namespace.clone(),
                    name: rel.name.clone(),
                };
                let target = match self.infos.get(&name) {
                    Some(info) => {
                        if rel.columns.iter().any(|c| !self.types.contains(c.type_oid)) {
                            // A type created after start (e.g. a new enum).
                            self.types = catalog::load_types(&self.sql).await?;
                        }
                        let columns: Vec<(String, u32)> = rel
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.type_oid))
                            .collect();
                        let flags: Vec<bool> = rel.columns.iter().map(|c| c.key).collect();
                        let sent = self.last_position.to_pg_string();
                        if let Some(stop) = self.ddl.relation(&name, &columns, &sent) {
                            DdlGuard::remember(self.ctx, &stop).await?;
                            return Err(stop.error());
                        }
                        Some(target_of(self.config, info, &columns, &flags, &self.types))
                    }
                    None => None,
                };
                self.relations.insert(rel.oid, target);
            }
            Message::Insert { relation, new } => {
                if let Some(t) = target(&self.relations, relation)? {
                    if self.skip(t, &new, None).await? {
                        return Ok(());
                    }
                    let record = t.record(&mut self.writer, &new[..], None, Some(&new[..]));
                    self.buffered.push(&t.stream, record);
                }
            }
            Message::Update { relation, old, new } => {
                if let Some(t) = target(&self.relations, relation)? {
                    if let Some(old) = &old
                        && !t.same_key(&new[..], &old[..])
                        && !self.skip(t, old, None).await?
                    {
                        // The key changed: the old row is gone.
                        let record = t.record(&mut self.writer, &old[..], None, None);
                        self.buffered.push(&t.stream, record);
                    }
                    if !self.skip(t, &new, old.as_deref()).await? {
                        let record =
                            t.record(&mut self.writer, &new[..], old.as_deref(), Some(&new[..]));
                        self.buffered.push(&t.stream, record);
                    }
                }
            }
            Message::Delete { relation, old } => {
                if let Some(t) = target(&self.relations, relation)? {
                    if self.skip(t, &old, None).await? {
                        return Ok(());
                    }
                    let record = t.record(&mut self.writer, &old[..], None, None);
                    self.buffered.push(&t.stream, record);
                }
            }
            Message::Truncate { relations } => {
                for oid in relations {
                    let Some(Some(t)) = self.relations.get(&oid) else {
                        continue;
                    };
                    match self.config.truncate {
                        TruncatePolicy::Skip => {
                            self.truncates_skipped += 1;
                            tracing::warn!(
                                table = %t.table,
                                skipped_truncates = self.truncates_skipped,
                                "TRUNCATE not written to the stream (truncate: skip); consumers keep their rows"
                            );
                        }
                        TruncatePolicy::Record => {
                            tracing::info!(table = %t.table, "TRUNCATE written as a control record");
                            let record = t.truncate_record(&mut self.writer);
                            self.buffered.push(&t.stream, record);
                        }
                        TruncatePolicy::Fail => {
                            return Err(Error::new(
                                ErrorKind::Setup,
                                format!("table `{}` was truncated (truncate: fail)", t.table),
                            )
                            .with_hint("Empty the target by hand and set `truncate` to skip (or record) to continue; the truncate is read again on restart."));
                        }
                    }
                }
            }
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::Origin { .. }
            | Message::Type { .. }
            | Message::Other(_) => {}
        }
        Ok(())
    }

    /// Whether the change of the row `cells` (unchanged key cells taken from
    /// `old`) is already in what a resumed snapshot read.
    async fn skip(&self, t: &Target, cells: &[Cell<'_>], old: Option<&[Cell<'_>]>) -> Result<bool> {
        let Some(filter) = &self.filter else {
            return Ok(false);
        };
        if self.seen.is_empty() {
            return Ok(false);
        }
        let Some(order) = self.orders.get(&t.table) else {
            return Ok(false);
        };
        let key: Vec<String> = t
            .key
            .iter()
            .map(|&i| match (cells.get(i), old.and_then(|o| o.get(i))) {
                (Some(Cell::Text(text)), _) | (_, Some(Cell::Text(text))) => text.to_string(),
                _ => String::new(),
            })
            .collect();
        let skip = filter
            .skip(&self.seen, &t.table.to_string(), order, &key, &self.sql)
            .await?;
        if skip {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(table = %t.table, ?key, "change already in the resumed snapshot; skipped");
        }
        Ok(skip)
    }

    /// Sends the buffered records, grouped by stream in order; the last send
    /// carries `lsn` as the position (an empty send when nothing is buffered).
    /// Where a new session starts after a lost one (the last position handed
    /// to the runtime); what was sent of a transaction in progress is
    /// remembered so its replay skips exactly that.
    fn restart_point(&mut self) -> Lsn {
        if let (true, Some(txn)) = (self.in_transaction, self.txn) {
            let sent = self.txn_records + self.to_skip;
            if sent > 0 {
                self.resume_skip = Some((txn, sent));
            }
        }
        self.buffered.clear();
        self.in_transaction = false;
        self.txn = None;
        self.txn_records = 0;
        self.to_skip = 0;
        // The new session announces its relations again.
        self.relations.clear();
        self.commit_unix_ms = None;
        self.last_position
    }

    async fn flush(&mut self, lsn: Option<Lsn>) -> Result<()> {
        let mut skipped = 0;
        if self.txn.is_some() {
            // Records of the transaction being streamed (Commit clears it after this).
            let len = self.buffered.len as u64;
            self.txn_records += len;
            skipped = self.to_skip.min(len);
            self.to_skip -= skipped;
        }
        let mut groups = self.buffered.take(skipped as usize);
        // Mid-transaction: a position that resumes after what was sent of it.
        let partial = match (lsn, self.txn) {
            (None, Some(txn)) if self.in_transaction => {
                Some(partial_position(self.last_position, txn, self.txn_records))
            }
            _ => None,
        };
        if groups.is_empty() {
            if let Some(lsn) = lsn {
                groups.push((self.default_stream.clone(), Vec::new()));
                self.last_position = self.last_position.max(lsn);
            } else {
                return Ok(());
            }
        }
        let last = groups.len() - 1;
        // Records carry their transaction's commit time: once acknowledged
        // they set the task's lag (an empty keepalive send carries none).
        let at = self.commit_unix_ms;
        for (i, (stream, records)) in groups.into_iter().enumerate() {
            let pos = if i == last {
                lsn.map(position).or_else(|| partial.clone())
            } else {
                None
            };
            let at = if records.is_empty() { None } else { at };
            self.ctx.send_at(&stream, records, pos, at).await?;
        }
        if let Some(lsn) = lsn {
            self.last_position = self.last_position.max(lsn);
        }
        Ok(())
    }
}

/// The target of relation `relation` (`None`: not captured).
fn target(relations: &HashMap<u32, Option<Target>>, relation: u32) -> Result<Option<&Target>> {
    match relations.get(&relation) {
        Some(target) => Ok(target.as_ref()),
        None => Err(Error::new(
            ErrorKind::Protocol,
            format!("a change of relation {relation} arrived before its Relation message"),
        )),
    }
}

/// Microseconds since 2000-01-01 (PostgreSQL's epoch) → milliseconds since 1970-01-01.
fn unix_ms(pg_micros: i64) -> i64 {
    pg_micros.div_euclid(1000) + 946_684_800_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_become_unix_milliseconds() {
        assert_eq!(unix_ms(0), 946_684_800_000);
        // 2024-01-01T00:00:00Z
        assert_eq!(unix_ms(757_382_400_000_000), 1_704_067_200_000);
    }

    fn healthy() -> catalog::SlotState {
        catalog::SlotState {
            database: Some("db".into()),
            plugin: Some("pgoutput".into()),
            wal_status: Some("reserved".into()),
            active_pid: None,
            confirmed_flush_lsn: None,
        }
    }

    #[test]
    fn the_buffer_keeps_stream_runs_in_order_and_skips_from_the_front() {
        let mut b = Buffer::default();
        for (stream, key) in [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")] {
            b.push(stream, Record::raw(key, Vec::new()));
        }
        assert_eq!(b.len, 4);
        let keys = |groups: Vec<(String, Vec<Record>)>| -> Vec<(String, Vec<String>)> {
            groups
                .into_iter()
                .map(|(s, r)| (s, r.into_iter().map(|r| r.key).collect()))
                .collect()
        };
        // Skipping crosses a group boundary; emptied groups are dropped.
        assert_eq!(
            keys(b.take(2)),
            vec![
                ("b".into(), vec!["3".into()]),
                ("a".into(), vec!["4".into()])
            ]
        );
        assert_eq!(b.len, 0);
        b.push("a", Record::raw("5", Vec::new()));
        assert_eq!(keys(b.take(0)), vec![("a".into(), vec!["5".into()])]);
        assert!(b.take(0).is_empty());
    }

    #[test]
    fn positions_round_trip() {
        let p = position(Lsn(0x1_0000_00ff));
        assert_eq!(p, json!({"lsn": "1/FF"}));
        assert_eq!(position_lsn(Some(&p)), Some(Lsn(0x1_0000_00ff)));
        assert_eq!(position_lsn(Some(&json!({"snapshot": "done"}))), None);
    }

    #[test]
    fn the_slot_is_reused_and_never_silently_replaced() {
        let s = healthy();
        let lsn = Some(Lsn(42));
        assert_eq!(
            plan(SnapshotMode::Initial, lsn, Some(&s), None, "x", false).unwrap(),
            (Plan::Resume(Lsn(42)), false)
        );
        // Lost slot with a stored position: a clear error naming cause and fix…
        let err = plan(
            SnapshotMode::Initial,
            lsn,
            Some(&s),
            Some("wal_status = lost".into()),
            "x",
            false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Setup);
        assert!(err.message().contains("wal_status = lost"));
        assert!(err.hint().unwrap().contains("when_needed"));
        let err = plan(SnapshotMode::Never, lsn, None, None, "x", false).unwrap_err();
        assert!(err.message().contains("does not exist"));
        // …unless when_needed asks for a new snapshot.
        assert_eq!(
            plan(
                SnapshotMode::WhenNeeded,
                lsn,
                Some(&s),
                Some("lost".into()),
                "x",
                false
            )
            .unwrap(),
            (Plan::Create { snapshot: true }, true)
        );
        // First run, or a snapshot that never completed.
        assert_eq!(
            plan(SnapshotMode::Initial, None, None, None, "x", false).unwrap(),
            (Plan::Create { snapshot: true }, false)
        );
        assert_eq!(
            plan(SnapshotMode::Initial, None, Some(&s), None, "x", false).unwrap(),
            (Plan::Create { snapshot: true }, true)
        );
        assert_eq!(
            plan(SnapshotMode::Never, None, Some(&s), None, "x", false).unwrap(),
            (Plan::Reuse, false)
        );
        // A started snapshot of this slot resumes on it…
        assert_eq!(
            plan(SnapshotMode::Initial, None, Some(&s), None, "x", true).unwrap(),
            (Plan::ResumeSnapshot, false)
        );
        // …unless the slot is unusable or gone.
        assert_eq!(
            plan(
                SnapshotMode::Initial,
                None,
                Some(&s),
                Some("lost".into()),
                "x",
                true
            )
            .unwrap(),
            (Plan::Create { snapshot: true }, true)
        );
        assert_eq!(
            plan(SnapshotMode::Initial, None, None, None, "x", true).unwrap(),
            (Plan::Create { snapshot: true }, false)
        );
    }
}
