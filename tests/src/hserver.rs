//! A stand-in for HServer's IO worker, speaking its real channel protocol: it
//! launches `hstream-io <connector> run --config <dir>/config.json` exactly as
//! HServer does (piped stdin/stdout, the task directory as the log folder),
//! answers `KvGet`/`KvSet`/`Report` with `ConnectorResponse` lines, and records
//! everything the task wrote on stdout so tests can assert on it.
//!
//! Also: [`binary`] finds the `hstream-io` binary, and [`Serve`] runs the
//! embedded stream service as a child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `hstream-io` binary of this build (`target/<profile>/hstream-io`).
///
/// # Panics
/// When it has not been built, naming the command that builds it.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HSTREAM_IO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current executable");
    // A tool beside it (target/<profile>/<tool>) or a test in target/<profile>/deps/.
    let dir = exe.parent().expect("executable in a folder");
    let candidates = [
        Some(dir.join("hstream-io")),
        dir.parent().map(|p| p.join("hstream-io")),
    ];
    let bin = candidates
        .into_iter()
        .flatten()
        .find(|b| b.is_file())
        .unwrap_or_else(|| dir.join("hstream-io"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin hstream-io` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A line the task wrote on stdout, or a note about it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A well-formed request.
    Request {
        /// `KvGet`, `KvSet` or `Report`.
        name: String,
        /// Its body.
        body: Value,
        /// When it arrived.
        at: Instant,
    },
    /// Anything else on stdout: a protocol violation in task mode.
    Noise(String),
}

#[derive(Default)]
struct Shared {
    events: Vec<Event>,
    kv: HashMap<String, String>,
}

/// A task process under the fake HServer.
pub struct TaskProcess {
    child: Child,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    answer_kv_set: Arc<AtomicBool>,
    /// The task directory (config.json, app.log).
    pub dir: PathBuf,
}

impl TaskProcess {
    /// Writes `config.json` into `dir` and starts `hstream-io <connector> run`
    /// with `extra_args`, seeding the KV with `kv`.
    pub fn start(
        dir: &Path,
        connector: &str,
        config: &Value,
        kv: HashMap<String, String>,
        extra_args: &[&str],
    ) -> Self {
        std::fs::create_dir_all(dir).expect("task dir");
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, serde_json::to_vec(config).unwrap())
            .expect("write config.json");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr.log");
        // What `hstream-io serve` runs: the connector's own program when it is built.
        let (program, lead) = hstream_io_runtime::cli::connector_program(&binary(), connector);
        let mut child = Command::new(program)
            .args(lead)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .env("CONNECTOR_LOG_PATH", dir)
            .env_remove("HSTREAM_SERVICE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn hstream-io");
        let stdout = child.stdout.take().unwrap();
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        let shared = Arc::new((
            Mutex::new(Shared {
                kv,
                ..Shared::default()
            }),
            Condvar::new(),
        ));
        let answer_kv_set = Arc::new(AtomicBool::new(true));
        {
            let (stdin, shared, answer_kv_set) =
                (stdin.clone(), shared.clone(), answer_kv_set.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    serve_line(&line, &stdin, &shared, &answer_kv_set);
                }
            });
        }
        Self {
            child,
            stdin,
            shared,
            answer_kv_set,
            dir: dir.to_path_buf(),
        }
    }

    /// The task process's id (e.g. to read its memory use in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `{"name":"stop"}`.
    pub fn send_stop(&self) {
        write_line(&self.stdin, &json!({"name": "stop"}));
    }

    /// Sends a signal to the task process.
    pub fn signal(&self, signal: i32) {
        let rc = unsafe_kill(self.child.id() as i32, signal);
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Stops answering `KvSet` (to hold a task in its shutdown).
    pub fn stop_answering_kv_set(&self) {
        self.answer_kv_set.store(false, Ordering::SeqCst);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.0.lock().unwrap().events.clone()
    }

    /// The KV as the task left it.
    pub fn kv(&self) -> HashMap<String, String> {
        self.shared.0.lock().unwrap().kv.clone()
    }

    /// Waits until a request satisfying `pred` arrives (returns it) or `timeout` passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&str, &Value) -> bool,
    ) -> Option<(String, Value, Instant)> {
        self.wait_for_since(Instant::now() - Duration::from_secs(3600), timeout, pred)
    }

    /// Like [`Self::wait_for`], for requests that arrived at or after `since`.
    pub fn wait_for_since(
        &self,
        since: Instant,
        timeout: Duration,
        pred: impl Fn(&str, &Value) -> bool,
    ) -> Option<(String, Value, Instant)> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        loop {
            for e in &shared.events {
                if let Event::Request { name, body, at } = e
                    && *at >= since
                    && pred(name, body)
                {
                    return Some((name.clone(), body.clone(), *at));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            shared = cvar.wait_timeout(shared, left).unwrap().0;
        }
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// stderr of the task.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// app.log of the task.
    pub fn app_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("app.log")).unwrap_or_default()
    }
}

impl Drop for TaskProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: i32, signal: i32) -> i32 {
    // The workspace denies unsafe code; `kill(1)` does the same job.
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    if status.success() { 0 } else { 1 }
}

fn write_line(stdin: &Mutex<Option<ChildStdin>>, value: &Value) {
    if let Some(stdin) = stdin.lock().unwrap().as_mut() {
        let _ = writeln!(stdin, "{value}");
        let _ = stdin.flush();
    }
}

fn serve_line(
    line: &str,
    stdin: &Mutex<Option<ChildStdin>>,
    shared: &(Mutex<Shared>, Condvar),
    answer_kv_set: &AtomicBool,
) {
    let (lock, cvar) = shared;
    let parsed: Option<(String, String, Value)> =
        serde_json::from_str::<Value>(line).ok().and_then(|v| {
            Some((
                v.get("name")?.as_str()?.to_string(),
                v.get("id")?.as_str()?.to_string(),
                v.get("body")?.clone(),
            ))
        });
    let Some((name, id, body)) =
        parsed.filter(|(n, _, _)| ["KvGet", "KvSet", "Report"].contains(&n.as_str()))
    else {
        let mut s = lock.lock().unwrap();
        s.events.push(Event::Noise(line.to_string()));
        cvar.notify_all();
        return;
    };
    let reply = {
        let mut s = lock.lock().unwrap();
        let reply = match name.as_str() {
            "KvGet" => Some(
                body["key"]
                    .as_str()
                    .and_then(|k| s.kv.get(k).cloned())
                    .map_or(Value::Null, Value::String),
            ),
            "KvSet" if answer_kv_set.load(Ordering::SeqCst) => {
                if let (Some(k), Some(v)) = (body["key"].as_str(), body["value"].as_str()) {
                    s.kv.insert(k.to_string(), v.to_string());
                }
                Some(Value::Null)
            }
            "KvSet" => None,
            _ => Some(Value::Null),
        };
        s.events.push(Event::Request {
            name,
            body,
            at: Instant::now(),
        });
        cvar.notify_all();
        reply
    };
    if let Some(body) = reply {
        write_line(
            stdin,
            &json!({"name": "ConnectorResponse", "id": id, "body": body}),
        );
    }
}

/// `hstream-io serve` as a child process on a free port, killed on drop.
pub struct Serve {
    child: Child,
    /// `hstream://127.0.0.1:<port>`.
    pub url: String,
    /// The data folder.
    pub data_dir: PathBuf,
}

impl Serve {
    /// Starts the service with its data in `data_dir` and waits until it accepts connections.
    pub fn start(data_dir: &Path) -> Self {
        let port = free_port();
        Self::start_on(data_dir, port)
    }

    /// Starts the service on `port`.
    pub fn start_on(data_dir: &Path, port: u16) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("serve.log")).expect("serve log");
        let child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn hstream-io serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "hstream-io serve did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("hstream://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The service's process id (benchmarks read its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the service with SIGKILL (for crash tests).
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
