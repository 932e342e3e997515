//! Binlog streaming: registers as a replica, decodes row events of the
//! captured tables and sends one batch per transaction with the position after
//! its commit.
//!
//! - MariaDB: `@mariadb_slave_capability=4`, so GTID (162), GTID_LIST (163)
//!   and BINLOG_CHECKPOINT (161) arrive as themselves and are decoded in
//!   [`crate::events`]. Resume uses the stored GTID state through
//!   `@slave_connect_state` (COM_BINLOG_DUMP with an empty file name); without
//!   a GTID it uses file/position. COM_BINLOG_DUMP_GTID (MySQL's) is never
//!   sent: MariaDB rejects it.
//! - MySQL: file/position.
//! - A transaction's records are sent when its XID (or `COMMIT` query)
//!   arrives, with the position after it. A large transaction is sent in
//!   slices of [`FLUSH_RECORDS`], each with the position "transaction start +
//!   rows done", so memory stays bounded and a restart skips exactly what was
//!   sent.
//! - Decoding runs in its own task: a panic inside the binlog parser (it
//!   trusts length fields of a truncated packet) becomes an error naming the
//!   position, never a crashed process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use mysql_async::BinlogStreamRequest;
use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_common::binlog::events::TableMapEvent;

use crate::config::{DdlPolicy, MysqlSourceConfig, TableRef};
use crate::error::{ER_MASTER_FATAL_ERROR_READING_BINLOG, classify, connect, server_code};
use crate::events::{
    self, ANNOTATE_ROWS, BINLOG_CHECKPOINT, COMPRESSED_EVENTS, GtidState, MARIADB_GTID,
    MARIADB_GTID_LIST, Position, START_ENCRYPTION,
};
use crate::gtid_set::{GtidSet, is_mysql_set};
use crate::output::{FLUSH_RECORDS, Output};
use crate::resume::Coverage;
use crate::rows::{Layout, RowsDecoder};
use crate::snapshot::conversion;
use crate::types::{Cell, Origin, TableSchema, load_schema};

/// Shortest interval between two position-only commits (transactions that
/// touched no captured table, DDL, heartbeats).
const IDLE_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How streaming ended.
#[derive(Debug)]
pub enum Ended {
    /// The shutdown fired; everything sent is consistent with the last position.
    Shutdown,
    /// The server ended the stream (non-blocking dump) or closed the connection.
    ServerClosed,
    /// The server refused the start position before sending any event (purged
    /// binlog, unknown GTID): the caller may copy the tables again.
    Refused(Error),
}

/// Streams from `start` until the shutdown. Runs in its own task so a parser
/// panic becomes an error.
///
/// `resume` holds the start position and is kept at the last position handed
/// to the runtime, so a reconnect continues exactly there.
pub async fn stream(
    config: MysqlSourceConfig,
    ctx: SourceContext,
    output: Output,
    resume: Arc<Mutex<Position>>,
) -> Result<Ended> {
    let start = resume
        .lock()
        .map_err(|_| Error::internal("resume position lock poisoned"))?
        .clone();
    let shown = start.to_string();
    guarded(
        async move {
            let mut s = Streamer::new(config, ctx, output, start, resume);
            s.run().await
        },
        &shown,
    )
    .await
}

/// Runs `reader` in its own task: a panic inside it (the binlog parser
/// unwraps reads of truncated packets) becomes an error naming `shown`.
async fn guarded<F>(reader: F, shown: &str) -> Result<Ended>
where
    F: std::future::Future<Output = Result<Ended>> + Send + 'static,
{
    match tokio::spawn(reader).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the binlog reader failed on a truncated or corrupt event after position {shown}"
            ),
        )
        .with_hint("Check the server's binlog (mysqlbinlog) around that position; restarting the task retries from the last committed position.")),
        Err(join) => Err(Error::internal(format!("the binlog reader task ended: {join}"))),
    }
}

struct Streamer {
    config: MysqlSourceConfig,
    ctx: SourceContext,
    out: Output,
    /// Connection for reading table definitions.
    meta: Option<mysql_async::Conn>,
    /// Captured tables' definitions, by index in `out.tables()`; `None` = reload.
    schemas: Vec<Option<Arc<TableSchema>>>,
    /// table_id → index of a captured table (None: not captured).
    table_ids: HashMap<u64, Option<usize>>,
    /// table_id → the table's columns as the binlog names them, when they
    /// differ from the current definition (a backlog older than a DDL).
    projected: HashMap<u64, Arc<TableSchema>>,
    /// table_id → how its row images are read (from its last TABLE_MAP).
    layouts: HashMap<u64, std::result::Result<Arc<Layout>, String>>,
    mariadb: bool,
    server_crc32: bool,
    /// Current binlog file.
    file: String,
    /// End of the last event read (a transaction boundary between transactions).
    pos: u64,
    /// GTID state after the last committed transaction.
    gtid: GtidState,
    pending_gtid: Option<events::Gtid>,
    /// MySQL: the GTID set executed up to the last committed transaction
    /// (empty when unknown: GTID mode off, or a position without it).
    mysql_gtids: GtidSet,
    /// MySQL: the GTID of the transaction being read.
    pending_mysql: Option<([u8; 16], u64)>,
    /// Start of the transaction being read, if inside one.
    txn_start: Option<u64>,
    /// Row changes of captured tables read in this transaction.
    txn_rows: u64,
    /// Inside a multi-statement transaction (BEGIN … COMMIT/XID), where a
    /// QUERY event (SAVEPOINT, …) does not end it.
    txn_explicit: bool,
    /// Row changes to skip in the first transaction (resume inside it).
    skip: u64,
    /// Position sent last (what a reconnect resumes from).
    last_sent: Position,
    /// Shared copy of `last_sent` for the caller.
    resume: Arc<Mutex<Position>>,
    /// True once an event arrived on this connection.
    received: bool,
    last_commit: Instant,
    /// Key ranges a later snapshot already holds (see [`crate::resume`]).
    coverage: Coverage,
}

impl Streamer {
    fn new(
        config: MysqlSourceConfig,
        ctx: SourceContext,
        out: Output,
        start: Position,
        resume: Arc<Mutex<Position>>,
    ) -> Self {
        let gtid = GtidState::parse(&start.gtid).unwrap_or_default();
        let n = out.tables().len();
        let coverage = Coverage::new(
            &start.segments,
            n,
            |t| out.tables().iter().position(|r| r.to_string() == t),
            Some(config.clone()),
        );
        Self {
            config,
            ctx,
            out,
            meta: None,
            schemas: vec![None; n],
            table_ids: HashMap::new(),
            projected: HashMap::new(),
            layouts: HashMap::new(),
            mariadb: false,
            server_crc32: false,
            file: start.file.clone(),
            pos: start.pos,
            gtid,
            pending_gtid: None,
            mysql_gtids: GtidSet::parse(&start.gtid)
                .ok()
                .filter(|_| is_mysql_set(&start.gtid))
                .unwrap_or_default(),
            pending_mysql: None,
            txn_start: None,
            txn_rows: 0,
            txn_explicit: false,
            skip: start.skip,
            last_sent: start,
            resume,
            received: false,
            last_commit: Instant::now(),
            coverage,
        }
    }

    fn position(&self) -> Position {
        Position {
            file: self.file.clone(),
            pos: self.pos,
            gtid: self.gtid_text(),
            skip: 0,
            segments: self.coverage.segments(),
            snapshot: None,
        }
    }

    /// The GTID state to store: MariaDB's, else MySQL's executed set.
    fn gtid_text(&self) -> String {
        if self.mariadb || self.mysql_gtids.is_empty() {
            self.gtid.to_string()
        } else {
            self.mysql_gtids.to_string()
        }
    }

    async fn run(&mut self) -> Result<Ended> {
        let mut conn = connect(&self.config).await?;
        self.mariadb = crate::snapshot::is_mariadb(&mut conn).await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(|e| classify(e, "cannot read binlog_checksum"))?;
        self.server_crc32 = checksum.is_some_and(|c| c.eq_ignore_ascii_case("CRC32"));
        let mut setup = vec!["SET @mariadb_slave_capability = 4".to_string()];
        if self.config.heartbeat_interval_seconds > 0 {
            setup.push(format!(
                "SET @master_heartbeat_period = {}",
                u64::from(self.config.heartbeat_interval_seconds) * 1_000_000_000
            ));
        }
        let use_gtid = self.mariadb
            && !GtidState::parse(&self.last_sent.gtid)
                .unwrap_or_default()
                .is_empty();
        if use_gtid {
            // Validated by GtidState::parse: digits, dashes and commas only.
            setup.push(format!(
                "SET @slave_connect_state = '{}'",
                GtidState::parse(&self.last_sent.gtid).unwrap_or_default()
            ));
            setup.push("SET @slave_gtid_strict_mode = 0".into());
            setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
        }
        for sql in &setup {
            conn.query_drop(sql)
                .await
                .map_err(|e| classify(e, "cannot prepare the replication session"))?;
        }
        let server_id = self.config.effective_server_id(self.ctx.task_id());
        let file = self.last_sent.file.clone().into_bytes();
        // MySQL with a stored GTID set (and no resume inside a transaction):
        // COM_BINLOG_DUMP_GTID, which holds across a failover.
        let mysql_sids = (!self.mariadb && self.skip == 0)
            .then(|| self.mysql_gtids.to_sids())
            .flatten()
            .filter(|s| !s.is_empty());
        let use_gtid = use_gtid || mysql_sids.is_some();
        let request = if let Some(sids) = mysql_sids {
            BinlogStreamRequest::new(server_id)
                .with_gtid()
                .with_gtid_set(sids)
        } else if use_gtid {
            BinlogStreamRequest::new(server_id).with_pos(4)
        } else {
            BinlogStreamRequest::new(server_id)
                .with_filename(&file)
                .with_pos(self.last_sent.pos)
        };
        let start = self.last_sent.clone();
        tracing::info!(position = %start, server_id, gtid_mode = use_gtid, "binlog streaming started");
        let mut binlog = match conn.get_binlog_stream(request).await {
            Ok(b) => b,
            Err(e) if server_code(&e) == Some(ER_MASTER_FATAL_ERROR_READING_BINLOG) => {
                return Ok(Ended::Refused(self.read_error(e, &start)));
            }
            Err(e) => return Err(self.read_error(e, &start)),
        };
        let shutdown = self.ctx.shutdown().clone();
        loop {
            let next = tokio::select! {
                next = binlog.next() => next,
                _ = shutdown.wait() => {
                    self.out.discard();
                    self.flush_idle(true).await?;
                    let _ = binlog.close().await;
                    return Ok(Ended::Shutdown);
                }
            };
            let event = match next {
                None => return Ok(Ended::ServerClosed),
                Some(Err(e)) => {
                    let refused = server_code(&e) == Some(ER_MASTER_FATAL_ERROR_READING_BINLOG);
                    let error = self.read_error(e, &start);
                    return if refused && !self.received {
                        Ok(Ended::Refused(error))
                    } else {
                        Err(error)
                    };
                }
                Some(Ok(event)) => event,
            };
            self.received = true;
            self.handle(&event, &binlog).await?;
        }
    }

    fn read_error(&self, e: mysql_async::Error, start: &Position) -> Error {
        if server_code(&e) == Some(ER_MASTER_FATAL_ERROR_READING_BINLOG) {
            return classify(
                e,
                format!("cannot read the binlog from position {start}: the server refused it"),
            );
        }
        classify(
            e,
            format!("binlog stream failed after {}:{}", self.file, self.pos),
        )
    }

    async fn handle(&mut self, event: &Event, binlog: &mysql_async::BinlogStream) -> Result<()> {
        let header = event.header();
        let raw = header.event_type_raw();
        let log_pos = u64::from(header.log_pos());
        // Heartbeats and the events a connect re-sends carry no time.
        if header.timestamp() > 0 {
            self.out
                .set_event_time(i64::from(header.timestamp()) * 1000);
        }
        let corrupt = |e: std::io::Error| {
            Error::new(
                ErrorKind::Internal,
                format!(
                    "corrupt binlog event (type {raw}) ending at {}:{log_pos}",
                    self.file
                ),
            )
            .with_source(e)
        };
        match raw {
            MARIADB_GTID => {
                let g = events::decode_gtid(event.data()).map_err(|e| self.decode_error(e))?;
                self.begin(log_pos.saturating_sub(u64::from(header.event_size())));
                // MariaDB writes no BEGIN after a GTID: the GTID opens the transaction.
                self.txn_explicit = !g.standalone();
                self.pending_gtid = Some(g.gtid(header.server_id()));
            }
            MARIADB_GTID_LIST => {
                let list =
                    events::decode_gtid_list(event.data()).map_err(|e| self.decode_error(e))?;
                if self.txn_start.is_none() {
                    for g in list {
                        self.gtid.apply(g);
                    }
                }
            }
            BINLOG_CHECKPOINT => {
                events::decode_checkpoint(event.data()).map_err(|e| self.decode_error(e))?;
            }
            ANNOTATE_ROWS | START_ENCRYPTION => {}
            r if COMPRESSED_EVENTS.contains(&r) => {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!("compressed binlog event (type {r}) at {}:{log_pos}", self.file),
                )
                .with_hint("Set log_bin_compress=OFF on the server: compressed binlog events are not decoded."));
            }
            _ => {
                let Some(data) = event.read_data().map_err(corrupt)? else {
                    return Ok(());
                };
                self.handle_data(event, data, binlog).await?;
            }
        }
        // Positions only move forward within a file; ROTATE sets its own, and
        // the format description re-sent at connect time carries an older one.
        if log_pos > self.pos
            && raw != EventType::ROTATE_EVENT as u8
            && raw != EventType::FORMAT_DESCRIPTION_EVENT as u8
            && self.txn_start.is_none()
        {
            self.pos = log_pos;
        }
        if self.txn_start.is_none() {
            self.flush_idle(false).await?;
        }
        Ok(())
    }

    fn set_sent(&mut self, position: Position) {
        if let Ok(mut shared) = self.resume.lock() {
            *shared = position.clone();
        }
        self.last_sent = position;
        self.last_commit = Instant::now();
    }

    fn decode_error(&self, e: events::DecodeError) -> Error {
        Error::new(
            ErrorKind::Internal,
            format!(
                "cannot decode a binlog event after {}:{}",
                self.file, self.pos
            ),
        )
        .with_source(e)
    }

    fn begin(&mut self, start: u64) {
        self.txn_start = Some(start);
        self.txn_rows = 0;
        self.txn_explicit = false;
    }

    async fn handle_data(
        &mut self,
        event: &Event,
        data: EventData<'_>,
        binlog: &mysql_async::BinlogStream,
    ) -> Result<()> {
        let header = event.header();
        let log_pos = u64::from(header.log_pos());
        match data {
            EventData::RotateEvent(r) => {
                let with_checksum = event
                    .fde()
                    .footer()
                    .get_checksum_alg()
                    .ok()
                    .flatten()
                    .is_some_and(|a| {
                        a == mysql_common::binlog::consts::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
                    });
                self.file = events::rotate_file_name(
                    r.name_raw(),
                    header.log_pos(),
                    with_checksum,
                    self.server_crc32,
                )
                .map_err(|e| self.decode_error(e))?;
                self.pos = r.position();
            }
            EventData::GtidEvent(g) => {
                // MySQL: the transaction starts here.
                self.begin(log_pos.saturating_sub(u64::from(header.event_size())));
                self.pending_mysql = Some((g.sid(), g.gno()));
            }
            EventData::AnonymousGtidEvent(_) => {
                self.begin(log_pos.saturating_sub(u64::from(header.event_size())));
            }
            // MySQL, start of a file: the set before it. Only adopted when
            // nothing better is known (the stored set is exact; this one is
            // exact only when reading starts at the file's beginning).
            EventData::PreviousGtidsEvent(p) if self.mysql_gtids.is_empty() && self.pos <= 4 => {
                self.mysql_gtids = GtidSet::from_previous(&p);
            }
            EventData::QueryEvent(q) => {
                let query = q.query();
                let trimmed = query.trim();
                if trimmed.eq_ignore_ascii_case("BEGIN") {
                    if self.txn_start.is_none() {
                        self.begin(log_pos.saturating_sub(u64::from(header.event_size())));
                    }
                    self.txn_explicit = true;
                } else if trimmed.eq_ignore_ascii_case("COMMIT")
                    || trimmed.eq_ignore_ascii_case("ROLLBACK")
                {
                    self.commit(log_pos).await?;
                } else if !(self.txn_start.is_some() && self.txn_explicit) {
                    if self.config.ddl_policy == DdlPolicy::Strict
                        && let Some(table) =
                            names_captured_table(trimmed, &q.schema(), self.out.tables())
                    {
                        return Err(Error::new(
                            ErrorKind::Setup,
                            format!(
                                "DDL on captured table `{table}` at {}:{log_pos} (ddlPolicy strict): {}",
                                self.file,
                                excerpt(trimmed)
                            ),
                        )
                        .with_hint("The task stops here until told otherwise: set ddlPolicy to `evolve` (follow the change) or `ignore`, then restart it."));
                    }
                    // DDL or another standalone statement: its own transaction.
                    // Table definitions may have changed: read them again on next use.
                    self.schemas.iter_mut().for_each(|s| *s = None);
                    self.commit(log_pos).await?;
                }
                // Else a statement inside a transaction (SAVEPOINT, …): not a boundary.
            }
            EventData::XidEvent(_) => self.commit(log_pos).await?,
            EventData::TableMapEvent(tme) => {
                let index = self.out.index_of(&tme.database_name(), &tme.table_name());
                self.projected.remove(&tme.table_id());
                self.layouts.remove(&tme.table_id());
                if let Some(i) = index {
                    let schema = self.schema(i).await?;
                    let names = column_names(&tme);
                    let same = names.as_ref().is_none_or(|names| {
                        names.iter().eq(schema.columns.iter().map(|c| &c.name))
                    });
                    if !same && let Some(p) = names.as_deref().and_then(|n| schema.project(n)) {
                        // Columns named by the binlog (binlog_row_metadata=FULL),
                        // converted with their current types.
                        tracing::info!(table = %schema.table, file = %self.file, pos = log_pos, "binlog columns differ from the current definition; mapping them by name");
                        self.projected.insert(tme.table_id(), Arc::new(p));
                    } else if !same || tme.columns_count() as usize != schema.columns.len() {
                        if self.config.ddl_policy == DdlPolicy::Ignore {
                            tracing::warn!(table = %schema.table, file = %self.file, pos = log_pos,
                                binlog_columns = tme.columns_count(), current_columns = schema.columns.len(),
                                "rows of this event do not match the table's current definition; skipped (ddlPolicy ignore)");
                            self.table_ids.insert(tme.table_id(), None);
                            return Ok(());
                        }
                        return Err(Error::new(
                            ErrorKind::Setup,
                            format!(
                                "table `{}` has {} columns in the binlog at {}:{log_pos} but {} now; \
                                 its definition changed (DDL) after that event",
                                schema.table,
                                tme.columns_count(),
                                self.file,
                                schema.columns.len()
                            ),
                        )
                        .with_hint("Re-snapshot the table (delete the task's position and use snapshotMode `initial`), or resume from after the DDL."));
                    }
                }
                self.table_ids.insert(tme.table_id(), index);
            }
            EventData::RowsEvent(rows) => self.rows(&rows, binlog, log_pos).await?,
            EventData::HeartbeatEvent => {}
            EventData::FormatDescriptionEvent(_) => {}
            EventData::TransactionPayloadEvent(_) => {
                // The payload's events follow, decompressed by the stream reader.
            }
            _ => {}
        }
        Ok(())
    }

    async fn schema(&mut self, index: usize) -> Result<Arc<TableSchema>> {
        if let Some(s) = &self.schemas[index] {
            return Ok(s.clone());
        }
        if self.meta.is_none() {
            self.meta = Some(connect(&self.config).await?);
        }
        let table = self.out.tables()[index].clone();
        let conn = self
            .meta
            .as_mut()
            .ok_or_else(|| Error::internal("metadata connection missing"))?;
        let schema = Arc::new(load_schema(conn, &table).await?);
        self.schemas[index] = Some(schema.clone());
        Ok(schema)
    }

    /// The row layout of the TABLE_MAP `tme` (cached until the next TABLE_MAP of its id).
    fn layout(&mut self, tme: &TableMapEvent<'_>) -> std::result::Result<Arc<Layout>, String> {
        if let Some(l) = self.layouts.get(&tme.table_id()) {
            return l.clone();
        }
        let l = Layout::new(tme).map(Arc::new);
        self.layouts.insert(tme.table_id(), l.clone());
        l
    }

    async fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        binlog: &mysql_async::BinlogStream,
        log_pos: u64,
    ) -> Result<()> {
        let Some(Some(index)) = self.table_ids.get(&rows.table_id()).copied() else {
            return Ok(());
        };
        let Some(tme) = binlog.get_tme(rows.table_id()) else {
            return Err(Error::internal(format!(
                "rows event for table id {} without its TABLE_MAP at {}:{}",
                rows.table_id(),
                self.file,
                self.pos
            )));
        };
        let schema = match self.projected.get(&rows.table_id()) {
            Some(p) => p.clone(),
            None => self.schema(index).await?,
        };
        let table = schema.table.to_string();
        let zero = self.config.zero_date;
        let (is_insert, is_delete) = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => (true, false),
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
                (false, true)
            }
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!(
                        "partial JSON update of `{table}` at {}:{}",
                        self.file, self.pos
                    ),
                )
                .with_hint("Set binlog_row_value_options='' so updates carry full JSON values."));
            }
            _ => (false, false),
        };
        let file = self.file.clone();
        let undecodable = move |reason: String| {
            Error::new(
                ErrorKind::Internal,
                format!(
                    "cannot decode a row of `{table}` in the ROWS event ending at {file}:{log_pos}: {reason}"
                ),
            )
        };
        let layout = self.layout(tme).map_err(&undecodable)?;
        let mut decoder = RowsDecoder::new(&layout, rows).map_err(&undecodable)?;
        let table = &schema.table;
        let (mut before, mut after) = (Vec::new(), Vec::new());
        while decoder
            .next_row(&mut before, &mut after)
            .map_err(|e| undecodable(e.to_string()))?
        {
            self.txn_rows += 1;
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            let key_of = |row: &[Cell<'_>]| {
                schema
                    .key_of(row, Origin::Binlog, zero)
                    .map_err(|e| conversion(&table.to_string(), e))
            };
            // Start of this transaction: a later snapshot of the key's range
            // holds the change when it is before that snapshot's position.
            let txn_pos = self.txn_start.unwrap_or(self.pos);
            if is_delete {
                if !decoder.has_before() {
                    continue;
                }
                let key = key_of(&before)?;
                if !self
                    .coverage
                    .covers(index, &key, &self.file, txn_pos)
                    .await?
                {
                    self.out
                        .push::<[Cell<'_>]>(index, &schema, &key, None, Origin::Binlog)
                        .map_err(|e| conversion(&table.to_string(), e))?;
                }
            } else {
                if !decoder.has_after() {
                    continue;
                }
                let key = key_of(&after)?;
                if !is_insert && decoder.has_before() {
                    let old_key = key_of(&before)?;
                    if old_key != key
                        && !self
                            .coverage
                            .covers(index, &old_key, &self.file, txn_pos)
                            .await?
                    {
                        // The primary key changed: the old key is deleted.
                        self.out
                            .push::<[Cell<'_>]>(index, &schema, &old_key, None, Origin::Binlog)
                            .map_err(|e| conversion(&table.to_string(), e))?;
                    }
                }
                if !self
                    .coverage
                    .covers(index, &key, &self.file, txn_pos)
                    .await?
                {
                    self.out
                        .push(index, &schema, &key, Some(&after[..]), Origin::Binlog)
                        .map_err(|e| conversion(&table.to_string(), e))?;
                }
            }
            if self.out.buffered() >= FLUSH_RECORDS {
                let position = self.txn_start.map(|start| Position {
                    file: self.file.clone(),
                    pos: start,
                    gtid: self.gtid_text(),
                    skip: self.txn_rows,
                    segments: self.coverage.segments(),
                    snapshot: None,
                });
                self.out.flush(&self.ctx, position.as_ref()).await?;
                if let Some(p) = position {
                    self.set_sent(p);
                }
            }
        }
        Ok(())
    }

    async fn commit(&mut self, log_pos: u64) -> Result<()> {
        if let Some((sid, gno)) = self.pending_mysql.take() {
            self.mysql_gtids.add(sid, gno);
        }
        if let Some(g) = self.pending_gtid.take() {
            self.gtid.apply(g);
        }
        if log_pos > 0 {
            self.pos = log_pos;
        }
        self.txn_start = None;
        self.txn_rows = 0;
        self.txn_explicit = false;
        self.skip = 0;
        if self.coverage.prune(&self.file, self.pos) {
            tracing::info!(position = %self.position(), "streaming passed every resumed snapshot's position");
        }
        if self.out.buffered() > 0 {
            let position = self.position();
            self.out.flush(&self.ctx, Some(&position)).await?;
            self.set_sent(position);
        }
        Ok(())
    }

    /// Commits the position alone (no records: transactions on other
    /// tables, DDL, rotations) at most once per [`IDLE_COMMIT_INTERVAL`], or
    /// now when `force`; only between transactions.
    async fn flush_idle(&mut self, force: bool) -> Result<()> {
        if self.txn_start.is_some() || self.skip > 0 || self.file.is_empty() {
            return Ok(());
        }
        if !force && self.last_commit.elapsed() < IDLE_COMMIT_INTERVAL {
            return Ok(());
        }
        let position = self.position();
        if position == self.last_sent {
            return Ok(());
        }
        self.out.flush(&self.ctx, Some(&position)).await?;
        self.set_sent(position);
        Ok(())
    }
}

/// The captured table a statement names, if any: an identifier token equal to
/// `db.t`, or to `t` when the statement ran in database `db` (backticks and
/// case ignored). A textual test, so it also holds for statements no parser
/// here understands.
fn names_captured_table(sql: &str, default_db: &str, tables: &[TableRef]) -> Option<TableRef> {
    let text = sql.replace('`', "").to_lowercase();
    let tokens: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'))
        .filter(|t| !t.is_empty())
        .collect();
    let default_db = default_db.to_lowercase();
    tables
        .iter()
        .find(|t| {
            let name = t.name.to_lowercase();
            let qualified = format!("{}.{name}", t.database.to_lowercase());
            tokens.iter().any(|tok| {
                *tok == qualified || (*tok == name && default_db == t.database.to_lowercase())
            })
        })
        .cloned()
}

/// The first 200 characters of a statement, for messages.
fn excerpt(sql: &str) -> String {
    let mut s: String = sql.chars().take(200).collect();
    if s.len() < sql.len() {
        s.push('…');
    }
    s
}

/// The column names a TABLE_MAP carries with binlog_row_metadata=FULL.
fn column_names(tme: &mysql_common::binlog::events::TableMapEvent<'_>) -> Option<Vec<String>> {
    use mysql_common::binlog::events::OptionalMetadataField;
    for field in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(names)) = field {
            let names: Result<Vec<String>, _> = names
                .iter_names()
                .map(|n| n.map(|n| n.name().into_owned()))
                .collect();
            return names.ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::binlog::EventStreamReader;
    use mysql_common::binlog::consts::BinlogVersion;

    /// A 19-byte header announcing a 100-byte XID event, followed by 11 bytes.
    fn truncated_event() -> Vec<u8> {
        let mut raw = vec![0u8; 19];
        raw[4] = EventType::XID_EVENT as u8;
        raw[9..13].copy_from_slice(&100u32.to_le_bytes());
        raw.extend_from_slice(&[0u8; 11]);
        raw
    }

    #[tokio::test]
    async fn a_parser_panic_on_a_truncated_event_becomes_an_error() {
        let raw = truncated_event();
        let result = guarded(
            async move {
                // What the binlog stream does with each packet.
                let mut reader = EventStreamReader::new(BinlogVersion::Version4);
                reader
                    .read(&raw[..])
                    .map_err(|e| Error::internal(e.to_string()))?;
                Ok(Ended::ServerClosed)
            },
            "binlog.000001:4",
        )
        .await;
        let error = result.expect_err("a truncated event is an error");
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(
            error
                .message()
                .contains("truncated or corrupt event after position binlog.000001:4")
        );
    }

    #[test]
    fn ddl_naming_a_captured_table_is_recognised() {
        let tables = [TableRef {
            database: "shop".into(),
            name: "Orders".into(),
        }];
        let hit = |sql: &str, db: &str| names_captured_table(sql, db, &tables).is_some();
        assert!(hit("ALTER TABLE orders ADD COLUMN x INT", "shop"));
        assert!(hit("alter table `shop`.`orders` drop column x", "other"));
        assert!(hit("RENAME TABLE orders TO orders_old", "shop"));
        assert!(hit("DROP TABLE IF EXISTS a,orders", "shop"));
        assert!(
            !hit("ALTER TABLE orders ADD COLUMN x INT", "other"),
            "another database"
        );
        assert!(!hit("ALTER TABLE orders_archive ADD x INT", "shop"));
        assert!(!hit("CREATE USER 'a'@'%'", "shop"));
    }

    #[tokio::test]
    async fn errors_pass_through_unchanged() {
        let result = guarded(
            async { Err(Error::new(ErrorKind::Connection, "lost")) },
            "f:4",
        )
        .await;
        assert_eq!(result.expect_err("error").kind(), ErrorKind::Connection);
    }
}
