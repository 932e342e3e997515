//! The private MariaDB server (settings and sharing: see the [module docs](super)).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::OnceCell;

use super::{
    PASSWORD, USER, blocking, database_name, find_binary, free_port, is_root, log_file, log_tail,
    read_state, run, run_logged, wait_ready, write_state,
};

const INSTALL: &str = "apt-get install -y mariadb-server";

/// A running private MariaDB server.
#[derive(Debug, Clone)]
pub struct MariaDb {
    host: String,
    port: u16,
    socket: PathBuf,
}

/// One test's database on the private MariaDB server, reached as the password-authenticated
/// superuser [`USER`](super::USER).
#[derive(Debug, Clone)]
pub struct MariaDbDatabase {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

static SERVER: OnceCell<MariaDb> = OnceCell::const_new();

/// The MariaDB server of this test run, started on first use (see the [module docs](super)).
/// Panics, with the server log, if it cannot be started, and names the install command if
/// `mariadbd` is not installed.
pub async fn mariadb() -> &'static MariaDb {
    SERVER
        .get_or_init(|| async {
            let dir = blocking(|| run().dir.clone()).await;
            let _guard = blocking(|| run().lock_for_start())
                .await
                .unwrap_or_else(|e| panic!("MariaDB: {e}"));
            let sdir = dir.join("mariadb");
            if let Some(s) = read_state(&sdir) {
                return MariaDb {
                    host: "127.0.0.1".into(),
                    port: s["port"].as_u64().expect("state.port") as u16,
                    socket: PathBuf::from(s["socket"].as_str().expect("state.socket")),
                };
            }
            start(&sdir)
                .await
                .unwrap_or_else(|e| panic!("could not start a private MariaDB server: {e}"))
        })
        .await
}

impl MariaDb {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's private unix socket (connections there are `root`@`localhost`).
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// `root` over TCP, no database selected, no password.
    pub fn admin_opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some("root"))
            .into()
    }

    /// An administrative connection (`root`, no database selected).
    pub async fn admin(&self) -> Conn {
        Conn::new(self.admin_opts())
            .await
            .unwrap_or_else(|e| panic!("MariaDB admin connection: {e}"))
    }

    /// Create a fresh, empty database for one test.
    pub async fn create_database(&self) -> MariaDbDatabase {
        let name = database_name();
        let mut c = self.admin().await;
        c.query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = c.disconnect().await;
        MariaDbDatabase {
            name,
            host: self.host.clone(),
            port: self.port,
            user: USER.into(),
            password: PASSWORD.into(),
        }
    }
}

impl MariaDbDatabase {
    /// The CA certificate (PEM) the server's TLS certificate is signed by,
    /// for `tlsMode: verify-full` with `tlsCa`.
    pub fn tls_ca_pem(&self) -> String {
        super::tls::ca_pem(&super::run().dir.join("mariadb"))
    }

    /// `mysql://hstream:hstream-secret@127.0.0.1:PORT/NAME`
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.name
        )
    }

    /// Connection options for this database (TCP, password auth).
    pub fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(Some(self.name.clone()))
    }

    /// A connection to this database.
    pub async fn connect(&self) -> Conn {
        Conn::new(self.opts())
            .await
            .unwrap_or_else(|e| panic!("connect to MariaDB database {}: {e}", self.name))
    }

    /// Drop the database (optional: the server is discarded at the end of the run anyway).
    pub async fn drop_database(self) {
        let mut c = self.connect().await;
        let _ = c.query_drop(format!("DROP DATABASE `{}`", self.name)).await;
        let _ = c.disconnect().await;
    }
}

async fn start(dir: &Path) -> Result<MariaDb, String> {
    let (server, child) = start_owned(dir, true).await?;
    write_state(
        dir,
        &serde_json::json!({"pid": child.id(), "port": server.port,
            "socket": server.socket.to_string_lossy()}),
    )?;
    // The watchdog stops it; never waited for here.
    std::mem::forget(child);
    Ok(server)
}

/// Installs a data directory in `dir` and starts a server on it; the caller
/// owns the child. `own_group`: in a process group of its own (shared servers,
/// which must survive a nextest kill of one test).
async fn start_owned(
    dir: &Path,
    own_group: bool,
) -> Result<(MariaDb, std::process::Child), String> {
    let install_db =
        find_binary(&["mariadb-install-db", "mysql_install_db"], &[]).unwrap_or_else(|| {
            panic!("`mariadb-install-db` not found: install MariaDB with `{INSTALL}`")
        });
    let data = dir.join("data");
    let tmp = dir.join("tmp");
    {
        let dir = dir.to_path_buf();
        let (data, tmp) = (data.clone(), tmp.clone());
        blocking(move || -> Result<(), String> {
            let _ = fs::remove_dir_all(&dir);
            for d in [&data, &tmp] {
                fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
            }
            let mut cmd = Command::new(&install_db);
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--skip-name-resolve")
                .env("LC_ALL", "C");
            if is_root() {
                cmd.arg("--user=root");
            }
            run_logged(&mut cmd, &dir.join("install.log"), "mariadb-install-db")?;
            super::tls::write_server_tls(&dir, None).map(|_| ())
        })
        .await?;
    }
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        match launch(dir, port, own_group).await {
            Ok(mut child) => {
                let socket = dir.join("mysqld.sock");
                if let Err(e) = setup(&socket, port).await {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{e}\n{}", log_tail(&dir.join("server.log"), 30)));
                }
                return Ok((
                    MariaDb {
                        host: "127.0.0.1".into(),
                        port,
                        socket,
                    },
                    child,
                ));
            }
            Err(e) => {
                let retry =
                    e.contains("Address already in use") || e.contains("Bind on TCP/IP port");
                last_err = e;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last_err)
}

/// Starts `mariadbd` on the data directory in `dir` and port `port`; returns
/// once it answers on its socket.
async fn launch(dir: &Path, port: u16, own_group: bool) -> Result<std::process::Child, String> {
    let mariadbd = find_binary(&["mariadbd", "mysqld"], &[]).unwrap_or_else(|| {
        panic!("MariaDB server binary `mariadbd` not found: install it with `{INSTALL}`")
    });
    let data = dir.join("data");
    let tmp = dir.join("tmp");
    let socket = dir.join("mysqld.sock");
    let log = dir.join("server.log");
    let out = log_file(&log)?;
    let mut cmd = Command::new(&mariadbd);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--skip-networking=0")
        .arg("--skip-name-resolve")
        .arg(format!("--log-bin={}", data.join("binlog").display()))
        .arg("--binlog-format=ROW")
        .arg("--binlog-row-image=FULL")
        .arg("--binlog-row-metadata=FULL")
        .arg("--server-id=1")
        .arg("--innodb-flush-log-at-trx-commit=2")
        .arg("--sync-binlog=0")
        .arg("--innodb-doublewrite=0")
        .arg("--innodb-buffer-pool-size=256M")
        .arg("--innodb-log-file-size=256M")
        .arg("--max-connections=500")
        .arg("--max-allowed-packet=256M")
        .arg("--local-infile=1")
        .arg("--performance-schema=OFF")
        .arg("--default-time-zone=+00:00")
        .arg("--character-set-server=utf8mb4")
        .arg("--collation-server=utf8mb4_general_ci")
        .arg("--explicit-defaults-for-timestamp=1")
        .arg(format!(
            "--ssl-cert={}",
            dir.join("tls/server.pem").display()
        ))
        .arg(format!(
            "--ssl-key={}",
            dir.join("tls/server.key").display()
        ))
        .arg(format!("--ssl-ca={}", dir.join("tls/ca.pem").display()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    if own_group {
        // Its own process group: a nextest timeout kill of one test must not hit it.
        cmd.process_group(0);
    }
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", mariadbd.display()))?;
    fs::write(dir.join("server.pid"), format!("{}\n", child.id()))
        .map_err(|e| format!("write server.pid: {e}"))?;
    let sock = socket.clone();
    let ready = wait_ready(&mut child, || {
        let opts = OptsBuilder::default()
            .socket(Some(sock.to_string_lossy().into_owned()))
            .user(Some("root"));
        async move { Conn::new(opts).await?.disconnect().await }
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

/// A MariaDB server for one test alone (same settings as the shared one), for
/// tests that restart the server. Killed when dropped.
pub struct PrivateMariaDb {
    dir: PathBuf,
    server: MariaDb,
    child: Option<std::process::Child>,
}

impl PrivateMariaDb {
    /// Installs and starts a server in `dir` (emptied first). Panics with the log on failure.
    pub async fn start(dir: &Path) -> Self {
        let (server, child) = start_owned(dir, false)
            .await
            .unwrap_or_else(|e| panic!("could not start a private MariaDB server: {e}"));
        Self {
            dir: dir.to_path_buf(),
            server,
            child: Some(child),
        }
    }

    /// The server, e.g. to create a database.
    pub fn server(&self) -> &MariaDb {
        &self.server
    }

    /// Stops the server cleanly (SIGTERM, waits for the exit) and starts it
    /// again on the same data and port; `down` runs while it is stopped.
    pub async fn restart(&mut self, down: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = blocking(move || child.wait()).await;
        }
        tokio::time::sleep(down).await;
        let child = launch(&self.dir, self.server.port, false)
            .await
            .unwrap_or_else(|e| panic!("could not restart the private MariaDB server: {e}"));
        self.child = Some(child);
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Users: `root`@127.0.0.1 without password, `hstream`@% with password; both superusers.
async fn setup(socket: &Path, port: u16) -> Result<(), String> {
    let opts = OptsBuilder::default()
        .socket(Some(socket.to_string_lossy().into_owned()))
        .user(Some("root"));
    let mut c = Conn::new(opts).await.map_err(|e| e.to_string())?;
    c.query_drop(format!(
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
         CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION;
         FLUSH PRIVILEGES"
    ))
    .await
    .map_err(|e| format!("create users: {e}"))?;
    c.disconnect().await.map_err(|e| e.to_string())?;
    // The same path the tests take: TCP with password.
    let tcp = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(USER))
        .pass(Some(PASSWORD));
    let c = Conn::new(tcp)
        .await
        .map_err(|e| format!("TCP login as {USER}: {e}"))?;
    c.disconnect().await.map_err(|e| e.to_string())
}
