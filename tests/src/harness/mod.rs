//! Private MariaDB and PostgreSQL servers for integration tests and benchmarks.
//!
//! ```no_run
//! # async fn t() {
//! let db = hstream_io_tests::harness::mariadb().await.create_database().await;
//! let mut conn = db.connect().await; // mysql_async::Conn, database selected
//! let pg = hstream_io_tests::harness::postgres().await.create_database().await;
//! let client = pg.connect().await; // tokio_postgres::Client
//! # }
//! ```
//!
//! The system servers on 3306/5432 are never touched: every server here is started from the
//! installed binaries on a free port, in a directory of its own, bound to 127.0.0.1 only. A missing
//! binary is a panic naming the install command; nothing is skipped silently.
//!
//! # Server settings and why
//!
//! MariaDB (`mariadbd --no-defaults …`, see [`mariadb`]):
//! * `log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`, `binlog_row_metadata=FULL`,
//!   `server_id=1`: the MySQL source reads the row binlog; FULL images give before/after values of
//!   every column and FULL metadata gives column names and signedness inside the binlog, so the
//!   source never has to guess a table's shape from a later `information_schema` read.
//! * `skip_networking=0`, `bind_address=127.0.0.1`, a private socket: connectors speak TCP; the
//!   socket is only for the harness' own bootstrap.
//! * `innodb_flush_log_at_trx_commit=2`, `sync_binlog=0`, `innodb_doublewrite=0`: no fsync per
//!   commit. Test data is thrown away, speed matters on 2 cores.
//! * `local_infile=1`: `LOAD DATA LOCAL INFILE` for the bench loader.
//! * `skip_name_resolve`, `default_time_zone=+00:00`, utf8mb4: no DNS, deterministic timestamps.
//!
//! PostgreSQL (`postgres -D … -c …`, see [`postgres`]), run as the `postgres` system user when
//! the harness runs as root (postgres refuses to run as root):
//! * `wal_level=logical`, `max_replication_slots=20`, `max_wal_senders=20`: logical decoding for
//!   CDC tests; 20 so parallel tests can each hold a slot.
//! * `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: speed, data is thrown away.
//! * `listen_addresses=127.0.0.1`, a port, `unix_socket_directories` in the private directory.
//! * `pg_hba.conf`: role `hstream` (SUPERUSER REPLICATION, password `hstream-secret`) must
//!   authenticate with scram-sha-256 over TCP, so tests can exercise password handling and secret
//!   redaction; every other role is trusted on the socket and 127.0.0.1.
//!
//! Both servers run with TLS enabled but optional, using a certificate for `localhost` and
//! `127.0.0.1` signed by a CA made for the run ([`PostgresDatabase::tls_ca_pem`],
//! [`MariaDbDatabase::tls_ca_pem`]), so connectors' TLS modes meet a real handshake.
//!
//! Both servers have a password-authenticated superuser `hstream` / `hstream-secret`
//! ([`USER`], [`PASSWORD`]); database handles use it. The administrative connection (`root` on
//! MariaDB, `postgres` on PostgreSQL) needs no password.
//!
//! # One set of servers per test run, shared across processes
//!
//! Under `cargo test` all tests of a binary are threads of one process; under cargo-nextest every
//! test is its own process. Starting servers per process would cost seconds per test, so the
//! servers belong to the *run*, not to a process:
//!
//! * **Run directory.** The owner of a run is the parent of the test process (cargo-nextest, or
//!   cargo under `cargo test`), identified by pid and start time (pid reuse safe). All test
//!   processes of the run use `$TMPDIR/hstream-io-test-servers/run-<pid>-<starttime>/`
//!   (`HSTREAM_IO_TEST_SERVERS_DIR` overrides the base directory). A program that runs servers
//!   for itself (the bench) calls [`own_servers`] first and is its own owner.
//! * **Start once.** `run.lock` (flock, exclusive) serialises starting: the first process to ask
//!   for a server starts it and, once it answers, writes `<server>/state.json`; later processes
//!   find the state file, check the server pid is alive, and connect.
//! * **Reference count.** Every process that uses the run holds a shared flock on `users.lock`
//!   until it exits; the kernel drops it on any exit, including SIGKILL, so the count never leaks.
//! * **Watchdog.** The first process also starts a small bash watchdog in its own process group
//!   (so nextest's process-group kills of a timed-out test do not hit it), stdio to
//!   `watchdog.log` (so nextest sees no leaked pipe). It owns the servers' lifetime: when no
//!   process has held `users.lock` for [`IDLE_SECS`] seconds
//!   (`HSTREAM_IO_TEST_SERVERS_IDLE_SECS`), it takes `users.lock` exclusively (blocking newcomers),
//!   stops the servers and removes their state; a later user starts them again. When the owner
//!   process dies it stops the servers at once and deletes the run directory. Servers are stopped
//!   by the pids in their pid files, checked against `/proc/<pid>/cmdline` containing the run
//!   directory, so a reused pid is never killed.
//! * **Leftovers.** Every run first sweeps the base directory: a run directory whose owner and
//!   watchdog are both gone (e.g. the watchdog was SIGKILLed) has its servers killed and is
//!   deleted. Databases need no registry: they live inside servers that die with their run.
//!
//! Panicking tests, killed test processes and killed nextest runs therefore leave nothing behind;
//! only a SIGKILL of the watchdog itself leaves servers until the next run's sweep.
//!
//! Each test gets its own database, `t_<pid>_<n>_<random>`, from `create_database()`.
//!
//! # Servers of one test
//!
//! A test that stops or restarts the database server must not share it: [`PrivateMariaDb`] and
//! [`PrivatePostgres`] start a server with the same settings (TLS with a CA of its own included)
//! in a directory the test gives (its own data and port), stop it and start it again on the same
//! data and port (`PrivatePostgres::stop` is a fast shutdown), and kill it when dropped.

mod mariadb;
mod postgres;
mod tls;

pub use mariadb::{MariaDb, MariaDbDatabase, PrivateMariaDb, mariadb};
pub use postgres::{Postgres, PostgresDatabase, PrivatePostgres, postgres};

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The password-authenticated superuser on both servers.
pub const USER: &str = "hstream";
/// Its password (tests check it never shows up in logs or errors).
pub const PASSWORD: &str = "hstream-secret";
/// Seconds without any user process before the watchdog stops the servers of a run.
pub const IDLE_SECS: u64 = 15;
/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(90);

static OWN: AtomicBool = AtomicBool::new(false);

/// Make the current process the owner of the servers it starts (they stop when it exits),
/// instead of sharing them with its siblings under the parent process. Call before the first
/// [`mariadb`] / [`postgres`]; meant for programs like the bench, not for tests.
pub fn own_servers() {
    OWN.store(true, Ordering::SeqCst);
}

/// The run directory this process shares with the other processes of its test run.
pub(crate) struct Run {
    pub(crate) dir: PathBuf,
    owner: u32,
    owner_start: u64,
    /// Shared flock held for the life of the process (the reference count).
    _users: File,
}

static RUN: OnceLock<Run> = OnceLock::new();

/// The run this process belongs to: created (with its watchdog) if it is the first user.
/// Blocking; call from `spawn_blocking`.
pub(crate) fn run() -> &'static Run {
    RUN.get_or_init(|| open_run().unwrap_or_else(|e| panic!("test servers: {e}")))
}

fn open_run() -> Result<Run, String> {
    let base = std::env::var_os("HSTREAM_IO_TEST_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("hstream-io-test-servers"));
    mkdir_shared(&base)?;
    let me = std::process::id();
    let owner = if OWN.load(Ordering::SeqCst) {
        me
    } else {
        match std::os::unix::process::parent_id() {
            0 | 1 => me,
            p => p,
        }
    };
    let start = start_time(owner).ok_or_else(|| format!("cannot read /proc/{owner}/stat"))?;
    sweep(&base);
    let dir = base.join(format!("run-{owner}-{start}"));
    mkdir_shared(&dir)?;

    // Reference count first: while we hold it, the watchdog cannot stop the servers.
    let users = open_lock(&dir.join("users.lock"))?;
    users
        .lock_shared()
        .map_err(|e| format!("lock {}: {e}", dir.display()))?;
    let _guard = lock_exclusive(&dir.join("run.lock"))?;
    if !watchdog_alive(&dir) {
        start_watchdog(&dir, owner, start)?;
    }
    Ok(Run {
        dir,
        owner,
        owner_start: start,
        _users: users,
    })
}

impl Run {
    /// Take `run.lock` to start a server; refuse once the run's owner is gone (its watchdog is
    /// stopping everything, so a server started now would have nobody to stop it).
    pub(crate) fn lock_for_start(&self) -> Result<File, String> {
        let guard = lock_exclusive(&self.dir.join("run.lock"))?;
        if start_time(self.owner) != Some(self.owner_start) {
            return Err(format!(
                "the test run's owner (pid {}) has exited; not starting servers",
                self.owner
            ));
        }
        Ok(guard)
    }
}

/// Exclusive `run.lock`: held while a server is being started.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File, String> {
    let f = open_lock(path)?;
    f.lock()
        .map_err(|e| format!("lock {}: {e}", path.display()))?;
    Ok(f)
}

fn open_lock(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

fn mkdir_shared(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // The postgres user must be able to traverse into its own subdirectory.
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    Ok(())
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Is `pid` alive and started with `marker` on its command line?
pub(crate) fn pid_is(pid: u32, marker: &str) -> bool {
    cmdline(pid).is_some_and(|c| c.contains(marker))
}

pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

const WATCHDOG_NAME: &str = "hstream-io-test-watchdog";

fn watchdog_alive(dir: &Path) -> bool {
    read_pid(&dir.join("watchdog.pid")).is_some_and(|p| pid_is(p, WATCHDOG_NAME))
}

/// The watchdog: `bash -c SCRIPT hstream-io-test-watchdog DIR OWNER OWNER_START IDLE`.
const WATCHDOG: &str = r#"
dir=$1 owner=$2 owner_start=$3 idle=$4
log() { echo "$(date '+%F %T') watchdog: $*"; }
owner_alive() {
  local line rest
  read -r line 2>/dev/null </proc/$owner/stat || return 1
  rest=${line##*) }
  set -- $rest
  [[ ${20} == "$owner_start" ]]
}
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' </proc/$1/cmdline 2>/dev/null | grep -qF -- "$dir"; }
stop_pidfile() { # pidfile signal
  local f=$1 sig=$2 pid i
  [[ -s $f ]] || return 0
  pid=$(head -n1 "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
    log "stopping $f ($pid) with SIG$sig"
    kill -"$sig" "$pid" 2>/dev/null
    for i in $(seq 100); do ours "$pid" || break; sleep 0.1; done
    if ours "$pid"; then log "SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null; fi
  fi
  rm -f "$f"
}
stop_all() {
  rm -f "$dir"/*/state.json
  stop_pidfile "$dir/mariadb/server.pid" TERM &
  stop_pidfile "$dir/postgres/server.pid" QUIT &
  wait
  rm -rf "$dir/mariadb" "$dir/postgres"
}
log "started for owner $owner"
exec 8>>"$dir/users.lock"
idle_since=
while :; do
  sleep 0.25
  if ! owner_alive; then
    log "owner $owner is gone"
    # Let a start in progress finish writing its pid file, so it is stopped too.
    exec 9>>"$dir/run.lock"
    flock -w 120 9
    stop_all
    rm -rf "$dir"
    exit 0
  fi
  [[ -e $dir/mariadb/server.pid || -e $dir/postgres/server.pid ]] || { idle_since=; continue; }
  if flock -n -x 8; then
    : "${idle_since:=$SECONDS}"
    if (( SECONDS - idle_since >= idle )); then
      log "no users for ${idle}s"
      stop_all
      idle_since=
    fi
    flock -u 8
  else
    idle_since=
  fi
done
"#;

fn start_watchdog(dir: &Path, owner: u32, start: u64) -> Result<(), String> {
    let idle = std::env::var("HSTREAM_IO_TEST_SERVERS_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(IDLE_SECS);
    let log = log_file(&dir.join("watchdog.log"))?;
    let child = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(WATCHDOG_NAME)
        .arg(dir)
        .arg(owner.to_string())
        .arg(start.to_string())
        .arg(idle.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the watchdog (bash): {e}"))?;
    fs::write(dir.join("watchdog.pid"), format!("{}\n", child.id()))
        .map_err(|e| format!("write watchdog.pid: {e}"))?;
    // Not waited for: it outlives this process on purpose; the kernel's init reaps it.
    std::mem::forget(child);
    Ok(())
}

/// Remove run directories whose owner and watchdog are both gone, killing their servers.
fn sweep(base: &Path) {
    let Ok(_guard) = lock_exclusive(&base.join(".sweep.lock")) else {
        return;
    };
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("run-") else {
            continue;
        };
        let mut it = rest.splitn(2, '-');
        let (Some(Ok(pid)), Some(Ok(st))) = (
            it.next().map(str::parse::<u32>),
            it.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let dir = e.path();
        if start_time(pid) == Some(st) || watchdog_alive(&dir) {
            continue;
        }
        let marker = dir.to_string_lossy().into_owned();
        for server in ["mariadb", "postgres"] {
            if let Some(p) = read_pid(&dir.join(server).join("server.pid"))
                && pid_is(p, &marker)
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

pub(crate) fn log_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(no log at {}: {e})", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut s = String::new();
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    s.push_str(&String::from_utf8_lossy(&buf));
    let lines: Vec<&str> = s.lines().collect();
    format!(
        "--- last lines of {} ---\n{}",
        path.display(),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// A free TCP port on 127.0.0.1 (free now; the server binds it a moment later).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Find a server binary: `$PATH`, then the given directories.
pub(crate) fn find_binary(names: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut all: Vec<PathBuf> = std::env::split_paths(&path).collect();
    all.extend(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    all.splice(0..0, dirs.iter().cloned());
    for d in all {
        for n in names {
            let p = d.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run a setup command to completion, with its output in `log`; error with the log tail.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<(), String> {
    let f = log_file(log)?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().map_err(|e| e.to_string())?)
        .stderr(f)
        .status()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})\n{}", log_tail(log, 40)))
    }
}

/// Poll `check` until it succeeds, the process exits, or the timeout passes.
pub(crate) async fn wait_ready<F, Fut, E>(
    child: &mut std::process::Child,
    mut check: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited during start ({status})"));
        }
        let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "no answer within {START_TIMEOUT:?} (last error: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Write `state.json` atomically.
pub(crate) fn write_state(dir: &Path, state: &serde_json::Value) -> Result<(), String> {
    let tmp = dir.join("state.json.tmp");
    let mut f = File::create(&tmp).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    f.write_all(state.to_string().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, dir.join("state.json")).map_err(|e| format!("rename state: {e}"))
}

/// `state.json` of a server in this run, if the server pid in it is alive.
pub(crate) fn read_state(dir: &Path) -> Option<serde_json::Value> {
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
    let pid = u32::try_from(s.get("pid")?.as_u64()?).ok()?;
    pid_is(pid, &dir.to_string_lossy()).then_some(s)
}

/// Are we root? (`/proc/self` belongs to the effective uid.)
pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A fresh database name: `t_<pid>_<n>_<random>`.
pub(crate) fn database_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t_{}_{}_{:06x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Run blocking harness work off the async runtime; re-raise its panic message.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("test servers: {e}"),
        },
    }
}
