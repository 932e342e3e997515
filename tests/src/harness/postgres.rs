//! The private PostgreSQL server (settings and sharing: see the [module docs](super)).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};

use super::{
    PASSWORD, USER, blocking, database_name, find_binary, free_port, is_root, log_file, log_tail,
    read_state, run, run_logged, wait_ready, write_state,
};

const INSTALL: &str = "apt-get install -y postgresql";

/// A running private PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Postgres {
    host: String,
    port: u16,
    /// The server's directory (data, TLS files, log).
    dir: PathBuf,
}

/// One test's database on the private PostgreSQL server, reached as the password-authenticated
/// superuser [`USER`](super::USER) (scram-sha-256).
#[derive(Debug, Clone)]
pub struct PostgresDatabase {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The server's directory (its TLS files).
    server_dir: PathBuf,
}

static SERVER: OnceCell<Postgres> = OnceCell::const_new();

/// The PostgreSQL server of this test run, started on first use (see the [module docs](super)).
/// Panics, with the server log, if it cannot be started, and names the install command if the
/// server binaries are not installed.
pub async fn postgres() -> &'static Postgres {
    SERVER
        .get_or_init(|| async {
            let dir = blocking(|| run().dir.clone()).await;
            let _guard = blocking(|| run().lock_for_start())
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
            let sdir = dir.join("postgres");
            if let Some(s) = read_state(&sdir) {
                return Postgres {
                    host: "127.0.0.1".into(),
                    port: s["port"].as_u64().expect("state.port") as u16,
                    dir: sdir,
                };
            }
            start(&sdir)
                .await
                .unwrap_or_else(|e| panic!("could not start a private PostgreSQL server: {e}"))
        })
        .await
}

/// Open a client and drive its connection on the current runtime.
async fn open(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl Postgres {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap superuser `postgres` over TCP (trusted), database `postgres`.
    pub fn admin_config(&self) -> Config {
        let mut c = Config::new();
        c.host(&self.host)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        c
    }

    /// An administrative client (`postgres`, database `postgres`).
    pub async fn admin(&self) -> Client {
        open(&self.admin_config())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL admin connection: {e}"))
    }

    /// Create a fresh, empty database for one test, owned by [`USER`](super::USER).
    pub async fn create_database(&self) -> PostgresDatabase {
        let name = database_name();
        let c = self.admin().await;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\" OWNER {USER}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        PostgresDatabase {
            name,
            host: self.host.clone(),
            port: self.port,
            user: USER.into(),
            password: PASSWORD.into(),
            server_dir: self.dir.clone(),
        }
    }
}

impl PostgresDatabase {
    /// `postgres://hstream:hstream-secret@127.0.0.1:PORT/NAME`
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.name
        )
    }

    /// The CA certificate (PEM) the server's TLS certificate is signed by,
    /// for `tlsMode: verify-full` with `tlsCa`.
    pub fn tls_ca_pem(&self) -> String {
        super::tls::ca_pem(&self.server_dir)
    }

    /// Connection settings for this database (TCP, password auth).
    pub fn config(&self) -> Config {
        let mut c = Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.name);
        c
    }

    /// A client connected to this database; its connection runs on the current runtime.
    pub async fn connect(&self) -> Client {
        open(&self.config())
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL database {}: {e}", self.name))
    }

    /// Drop the database (optional: the server is discarded at the end of the run anyway).
    pub async fn drop_database(self) {
        let mut admin = self.config();
        admin.user("postgres").dbname("postgres");
        let Ok(c) = open(&admin).await else {
            return;
        };
        let _ = c
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// Binaries of the newest PostgreSQL under /usr/lib/postgresql/*/bin.
fn bin_dirs() -> Vec<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let ver = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((ver, e.path().join("bin")))
        })
        .collect();
    v.sort();
    v.into_iter().rev().map(|(_, p)| p).collect()
}

/// uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

/// The user to run `postgres` as: the `postgres` system user when the harness runs as root
/// (postgres refuses to run as root).
fn server_user() -> Option<(u32, u32)> {
    is_root().then(|| {
        postgres_user().unwrap_or_else(|| {
            panic!("running as root, but there is no `postgres` system user to run PostgreSQL as: install it with `{INSTALL}`")
        })
    })
}

/// A fresh data directory in `dir` (emptied first): initdb, pg_hba.conf and the TLS files.
async fn prepare(dir: &Path) -> Result<(), String> {
    let dirs = bin_dirs();
    let initdb = find_binary(&["initdb"], &dirs)
        .unwrap_or_else(|| panic!("`initdb` not found: install PostgreSQL with `{INSTALL}`"));
    let user = server_user();
    let (dir, data) = (dir.to_path_buf(), dir.join("data"));
    blocking(move || -> Result<(), String> {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .current_dir(&dir)
            .env("LC_ALL", "C");
        as_server_user(&mut cmd, user);
        run_logged(&mut cmd, &dir.join("initdb.log"), "initdb")?;
        // First match wins: the password role must authenticate, everyone else is trusted.
        let hba = format!(
            "local all all trust\n\
             local replication all trust\n\
             host all {USER} 127.0.0.1/32 scram-sha-256\n\
             host replication {USER} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n"
        );
        fs::write(data.join("pg_hba.conf"), hba).map_err(|e| format!("pg_hba.conf: {e}"))?;
        super::tls::write_server_tls(&dir, user).map(|_| ())
    })
    .await
}

/// Starts `postgres` on the data directory in `dir` and port `port` (in a process group of its
/// own when `own_group`); returns once it answers. The log is appended to `dir/server.log`.
async fn launch(dir: &Path, port: u16, own_group: bool) -> Result<std::process::Child, String> {
    let postgres_bin = find_binary(&["postgres"], &bin_dirs()).unwrap_or_else(|| {
        panic!("PostgreSQL server binary `postgres` not found under /usr/lib/postgresql/*/bin: install it with `{INSTALL}`")
    });
    let data = dir.join("data");
    let log = dir.join("server.log");
    let out = log_file(&log)?;
    let mut cmd = Command::new(&postgres_bin);
    cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string());
    for (k, v) in [
        ("listen_addresses", "127.0.0.1".to_string()),
        (
            "unix_socket_directories",
            dir.to_string_lossy().into_owned(),
        ),
        ("wal_level", "logical".into()),
        ("max_replication_slots", "20".into()),
        ("max_wal_senders", "20".into()),
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("full_page_writes", "off".into()),
        ("max_connections", "300".into()),
        ("shared_buffers", "256MB".into()),
        ("max_wal_size", "4GB".into()),
        ("timezone", "UTC".into()),
        ("password_encryption", "scram-sha-256".into()),
        ("ssl", "on".into()),
        (
            "ssl_cert_file",
            dir.join("tls/server.pem").to_string_lossy().into_owned(),
        ),
        (
            "ssl_key_file",
            dir.join("tls/server.key").to_string_lossy().into_owned(),
        ),
    ] {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    cmd.current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    if own_group {
        // Its own process group: a nextest timeout kill of one test must not hit it.
        cmd.process_group(0);
    }
    as_server_user(&mut cmd, server_user());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", postgres_bin.display()))?;
    fs::write(dir.join("server.pid"), format!("{}\n", child.id()))
        .map_err(|e| format!("write server.pid: {e}"))?;
    let admin = Postgres {
        host: "127.0.0.1".into(),
        port,
        dir: dir.to_path_buf(),
    }
    .admin_config();
    let ready = wait_ready(&mut child, || {
        let admin = admin.clone();
        async move {
            open(&admin)
                .await?
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
        }
    })
    .await;
    match ready {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{e}\n{}", log_tail(&log, 30)))
        }
    }
}

/// A new server in `dir` on a free port, set up (role `hstream`): the server and its process.
async fn start_owned(
    dir: &Path,
    own_group: bool,
) -> Result<(Postgres, std::process::Child), String> {
    prepare(dir).await?;
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        match launch(dir, port, own_group).await {
            Ok(mut child) => {
                let server = Postgres {
                    host: "127.0.0.1".into(),
                    port,
                    dir: dir.to_path_buf(),
                };
                if let Err(e) = setup(&server).await {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{e}\n{}", log_tail(&dir.join("server.log"), 30)));
                }
                return Ok((server, child));
            }
            Err(e) => {
                let retry = e.contains("Address already in use");
                last_err = e;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last_err)
}

/// The shared server of the run, in `dir`; the watchdog stops it.
async fn start(dir: &Path) -> Result<Postgres, String> {
    let (server, child) = start_owned(dir, true).await?;
    write_state(
        dir,
        &serde_json::json!({"pid": child.id(), "port": server.port}),
    )?;
    // The watchdog stops it; never waited for here.
    std::mem::forget(child);
    Ok(server)
}

/// A PostgreSQL server for one test alone (same settings, TLS included, as the shared one, with
/// its own data directory, port and CA), for tests that stop and restart the server. Stopped
/// (immediate shutdown) when dropped.
pub struct PrivatePostgres {
    server: Postgres,
    child: Option<std::process::Child>,
}

impl PrivatePostgres {
    /// Initialises and starts a server in `dir` (emptied first). Panics with the log on failure.
    pub async fn start(dir: &Path) -> Self {
        let (server, child) = start_owned(dir, false)
            .await
            .unwrap_or_else(|e| panic!("could not start a private PostgreSQL server: {e}"));
        Self {
            server,
            child: Some(child),
        }
    }

    /// The server, e.g. to create a database.
    pub fn server(&self) -> &Postgres {
        &self.server
    }

    /// Stops the server with a fast shutdown (SIGINT: open transactions are rolled back,
    /// sessions are disconnected, a shutdown checkpoint is written) and waits for its exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = blocking(move || child.wait()).await;
        }
    }

    /// Starts the stopped server again on the same data directory and port. Panics with the log
    /// if it does not come up.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = launch(&self.server.dir, self.server.port, false)
            .await
            .unwrap_or_else(|e| panic!("could not restart the private PostgreSQL server: {e}"));
        self.child = Some(child);
    }

    /// [`stop`](Self::stop), `down` of downtime, [`start_again`](Self::start_again).
    pub async fn restart(&mut self, down: std::time::Duration) {
        self.stop().await;
        tokio::time::sleep(down).await;
        self.start_again().await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster takes its backends down with it.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Role `hstream`: SUPERUSER REPLICATION with a password; check the password path works.
async fn setup(server: &Postgres) -> Result<(), String> {
    let c = open(&server.admin_config())
        .await
        .map_err(|e| e.to_string())?;
    c.batch_execute(&format!(
        "CREATE ROLE {USER} LOGIN SUPERUSER REPLICATION PASSWORD '{PASSWORD}'"
    ))
    .await
    .map_err(|e| format!("create role {USER}: {e}"))?;
    let mut cfg = server.admin_config();
    cfg.user(USER).password(PASSWORD);
    open(&cfg)
        .await
        .map_err(|e| format!("TCP login as {USER}: {e}"))?;
    Ok(())
}
