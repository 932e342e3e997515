//! `hstream-io serve` as an IO worker, end to end with real processes: the
//! connector lifecycle through SQL (`hstream-io sql`), the scripting CLI
//! (`hstream-io connector …`) and the gRPC API; crash recovery of tasks and of
//! the worker itself; HServer's error codes; secrets redacted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hstream_io_runtime::stream::wire;
use hstream_io_runtime::stream::wire::h_stream_api_client::HStreamApiClient;
use hstream_io_tests::hserver::{binary, free_port};
use serde_json::{Value, json};

/// `hstream-io serve` with the IO worker, as a child process.
struct Worker {
    child: Child,
    port: u16,
    data_dir: PathBuf,
}

impl Worker {
    fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, free_port())
    }

    fn start_on(data_dir: &Path, port: u16) -> Self {
        Self::start_with(data_dir, port, &[])
    }

    fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("worker.log"))
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--task-restart-backoff-ms", "200", "--task-stop-grace", "5"])
            .args(extra)
            .env("WORKER_SECRET_TOKEN", "must-not-reach-tasks")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn hstream-io serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("hstream://127.0.0.1:{}", self.port)
    }

    /// (exit code, stdout, stderr) of `hstream-io <args> --service-url <url>`.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(binary())
            .args(args)
            .args(["--service-url", &self.url()])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a statement that must succeed; its stdout.
    fn sql(&self, statement: &str) -> String {
        let (code, out, err) = self.cli(&["sql", statement]);
        assert_eq!(code, 0, "{statement} failed: {err}");
        out
    }

    /// `connector describe NAME --output json`.
    fn describe(&self, name: &str) -> Value {
        let (code, out, err) = self.cli(&["connector", "describe", name, "--output", "json"]);
        assert_eq!(code, 0, "describe {name}: {err}");
        serde_json::from_str(&out).unwrap()
    }

    fn task_pid(&self, task_id: &str) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("tasks").join(task_id).join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // already reaped (kill9): its pid may belong to someone else now
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some` (60 s at most), else panics with `what`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The generator's position: records generated and acknowledged (from its offsets).
fn generated(c: &Value) -> Option<u64> {
    c["offsets"]
        .as_array()?
        .iter()
        .find_map(|o| o["generatedRecords"].as_u64())
}

/// Sends SIGKILL to process `pid` (a task the worker should restart).
fn kill9(pid: u32) {
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success(),
        "kill -9 {pid}"
    );
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// HServer's error code from a status's details (`{"error": code, …}`).
fn hs_code(details: &[u8]) -> i64 {
    let d: Value = serde_json::from_slice(details).expect("status details are JSON");
    d["error"].as_i64().expect("error code in the details")
}

#[test]
fn sql_lifecycle_with_generator_and_blackhole() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));

    assert!(
        w.sql("CREATE STREAM s1 WITH (SHARD_COUNT = 2);")
            .contains("created stream s1 (2 shards)")
    );
    let streams = w.sql("SHOW STREAMS;");
    assert!(
        streams.contains("| s1 ") && streams.contains("| 2 "),
        "{streams}"
    );

    let created = w.sql(r#"CREATE SOURCE CONNECTOR gen1 FROM generator WITH ("stream" = "s1", "period" = 1, "batchSize" = 5);"#);
    assert!(
        created.contains("created SOURCE connector gen1 (RUNNING"),
        "{created}"
    );
    let created = w.sql(r#"create sink connector bh1 to blackhole with ("stream" = "s1");"#);
    assert!(
        created.contains("created SINK connector bh1 (RUNNING"),
        "{created}"
    );

    let shown = w.sql("SHOW CONNECTORS;");
    for needle in [
        "| gen1 ",
        "| bh1 ",
        "| SOURCE ",
        "| SINK ",
        "| generator ",
        "| blackhole ",
        "| RUNNING ",
    ] {
        assert!(shown.contains(needle), "{needle} missing in\n{shown}");
    }

    let before_pause = eventually("generator offsets", || {
        generated(&w.describe("gen1")).filter(|n| *n > 0)
    });
    let described = w.sql("DESCRIBE CONNECTOR gen1;");
    for needle in [
        "| Status  | RUNNING",
        "\"stream\": \"s1\"",
        "\"batchSize\": 5",
        "generatedRecords",
        "source-generator run --config",
    ] {
        assert!(
            described.contains(needle),
            "{needle} missing in\n{described}"
        );
    }

    // Logs: 1-based paging of app.log.
    let (code, logs, err) = w.cli(&["connector", "logs", "gen1", "--begin", "1", "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(logs.lines().count(), 2, "{logs}");
    let (_, all, _) = w.cli(&[
        "connector",
        "logs",
        "gen1",
        "--begin",
        "1",
        "--count",
        "100000",
    ]);
    assert!(all.starts_with(&logs), "page 1 is the start of the log");

    // Pause: STOPPED, no process; the offsets stay.
    assert!(
        w.sql("PAUSE CONNECTOR gen1;")
            .contains("paused connector gen1")
    );
    let paused = w.describe("gen1");
    assert_eq!(paused["status"], "STOPPED");
    assert!(
        paused["process"].as_str().unwrap().starts_with("stopped"),
        "{paused}"
    );
    let at_pause = generated(&paused).unwrap();
    assert!(at_pause >= before_pause);
    assert!(
        w.task_pid(paused["taskId"].as_str().unwrap()).is_none(),
        "no process while paused"
    );

    // Resume: continues from the stored position, not from zero.
    assert!(
        w.sql("RESUME CONNECTOR gen1;")
            .contains("resumed connector gen1")
    );
    eventually("generator to continue after resume", || {
        let c = w.describe("gen1");
        (c["status"] == "RUNNING" && generated(&c)? > at_pause).then_some(())
    });

    // Alter: shallow merge, re-checked, restarted.
    let (code, out, err) = w.cli(&[
        "connector",
        "alter",
        "gen1",
        "--config-json",
        r#"{"batchSize": 7}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("altered connector gen1"));
    let altered = w.describe("gen1");
    assert_eq!(
        altered["config"],
        json!({"stream": "s1", "period": 1, "batchSize": 7})
    );
    assert_eq!(altered["status"], "RUNNING");
    // An invalid change is refused by `check` (604) and changes nothing.
    let (code, _, err) = w.cli(&[
        "connector",
        "alter",
        "gen1",
        "--config-json",
        r#"{"batchSize": 0}"#,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("ConnectorCheckFailed (604)"), "{err}");
    assert_eq!(w.describe("gen1")["config"]["batchSize"], 7);

    // Drop.
    assert!(
        w.sql("DROP CONNECTOR bh1;")
            .contains("dropped connector bh1")
    );
    let shown = w.sql("SHOW CONNECTORS;");
    assert!(
        !shown.contains("| bh1 ") && shown.contains("| gen1 "),
        "{shown}"
    );
    let (code, _, err) = w.cli(&["sql", "DESCRIBE CONNECTOR bh1;"]);
    assert_eq!(code, 1);
    assert!(err.contains("ConnectorNotFound (600)"), "{err}");
    assert!(
        w.sql("DROP CONNECTOR bh1 IF EXISTS;")
            .contains("does not exist")
    );

    // JSON listing for scripts.
    let (code, out, _) = w.cli(&["connector", "list", "--output", "json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gen1"]);

    assert!(w.sql("DROP CONNECTOR gen1;").contains("dropped"));
    assert!(w.sql("DROP STREAM s1;").contains("dropped stream s1"));
    assert!(!w.sql("SHOW STREAMS;").contains("| s1 "));
}

#[test]
fn bad_sql_points_at_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    let (code, _, err) = w.cli(&[
        "sql",
        "CREATE SOURCE CONNECTOR c1 TO generator WITH (\"stream\" = \"s\");",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1, column 28: expected FROM, found `TO`"),
        "{err}"
    );
    assert!(
        err.contains("\n  ") && err.trim_end().ends_with('^'),
        "{err}"
    );
    // The shell (no statement argument): statements from stdin, one bad one reported, the rest run.
    let mut shell = Command::new(binary())
        .args(["sql", "--service-url", &w.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = shell.stdin.take().unwrap();
        stdin
            .write_all(b"SHOW CONECTORS;\nCREATE STREAM\n  sh1;\nSHOW STREAMS;\n")
            .unwrap();
    }
    let out = shell.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "one statement failed: {stderr}");
    assert!(
        stderr.contains("expected CONNECTORS or STREAMS, found `CONECTORS`"),
        "{stderr}"
    );
    assert!(
        stdout.contains("created stream sh1") && stdout.contains("| sh1 "),
        "{stdout}"
    );
    let (code, _, err) = w.cli(&["sql", "SELECT 1;"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected CREATE or SHOW"), "{err}");
}

/// Output of a process read on a thread, to wait for text in it.
struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

impl Screen {
    fn of(mut from: impl std::io::Read + Send + 'static) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self(text)
    }

    /// Waits (up to 60 s) for `child` to exit successfully.
    fn wait_exit(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{status}: {:?}", self.0.lock().unwrap());
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the shell did not exit: {:?}", self.0.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `needle` appears `times` times in all the output so far.
    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.0.lock().unwrap().clone();
            if text.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} ×{times} in {text:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_interactive_shell_edits_lines_and_keeps_history_across_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    let history = tmp.path().join("history");
    // `script` gives the shell a terminal (a pty), as a person at a keyboard.
    let session = || {
        let command = format!("{} sql --service-url {}", binary().display(), w.url());
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("HSTREAM_IO_HISTORY", &history)
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("`script` (util-linux) runs the shell on a pty");
        let screen = Screen::of(child.stdout.take().unwrap());
        (child, screen)
    };
    use std::io::Write;

    // rustyline turns bracketed paste on each time it waits for a line in
    // raw mode: the n-th of those means "ready for keys" (keys sent while the
    // terminal is between modes could be cooked by the line discipline).
    const READY: &str = "\x1b[?2004h";
    let (mut child, screen) = session();
    let mut keys = child.stdin.take().unwrap();
    screen.wait_for(READY, 1);
    // A statement over two lines: the continuation prompt, then the result.
    keys.write_all(b"CREATE STREAM\r").unwrap();
    screen.wait_for("          > ", 1);
    screen.wait_for(READY, 2);
    keys.write_all(b"hist1;\r").unwrap();
    screen.wait_for("created stream hist1", 1);
    screen.wait_for(READY, 3);
    // Ctrl-C drops a half-typed statement; Ctrl-D leaves.
    keys.write_all(b"DROP STR\x03").unwrap();
    screen.wait_for(READY, 4);
    keys.write_all(b"\x04").unwrap();
    screen.wait_exit(&mut child);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("CREATE STREAM hist1;"), "{saved:?}");
    assert!(!saved.contains("DROP STR"), "{saved:?}");

    // A new session recalls it with the Up arrow.
    let (mut child, screen) = session();
    let mut keys = child.stdin.take().unwrap();
    screen.wait_for(READY, 1);
    keys.write_all(b"\x1b[A").unwrap();
    screen.wait_for("CREATE STREAM hist1;", 1);
    keys.write_all(b"\x03").unwrap();
    screen.wait_for(READY, 2);
    keys.write_all(b"\x04").unwrap();
    screen.wait_exit(&mut child);
    let (code, out, _) = w.cli(&["sql", "SHOW STREAMS;"]);
    assert_eq!(code, 0);
    assert!(out.contains("| hist1 "), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_api_answers_with_hserver_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    let mut api = HStreamApiClient::connect(format!("http://127.0.0.1:{}", w.port))
        .await
        .unwrap();
    let create =
        |name: &str, kind: &str, target: &str, config: Value| wire::CreateConnectorRequest {
            name: name.into(),
            r#type: kind.into(),
            target: target.into(),
            config: config.to_string(),
        };
    let gen_cfg = json!({"stream": "g1", "period": 1});

    let c = api
        .create_connector(create("gen1", "source", "generator", gen_cfg.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (c.name.as_str(), c.r#type.as_str(), c.status.as_str()),
        ("gen1", "SOURCE", "RUNNING")
    );
    assert!(uuid_like(&c.task_id), "{}", c.task_id);
    assert_eq!(c.node, format!("127.0.0.1:{}", w.port));
    assert!(
        c.image.ends_with(&format!(
            "source-generator run --config {}",
            w.data_dir
                .join("tasks")
                .join(&c.task_id)
                .join("config.json")
                .display()
        )),
        "{}",
        c.image
    );
    let task_config: Value = serde_json::from_slice(
        &std::fs::read(
            w.data_dir
                .join("tasks")
                .join(&c.task_id)
                .join("config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(task_config["connector"], gen_cfg);
    assert_eq!(task_config["hstream"]["serviceUrl"], w.url());
    assert_eq!(task_config["task"], c.task_id.as_str());

    let cases = [
        (create("1bad", "SOURCE", "generator", gen_cfg.clone()), 603),
        (create("c2", "SOURCES", "generator", gen_cfg.clone()), 602),
        (create("c2", "SOURCE", "nosuch", gen_cfg.clone()), 605),
        (create("c2", "SINK", "generator", gen_cfg.clone()), 605),
        (
            create("c2", "SOURCE", "generator", json!({"period": 1})),
            604,
        ),
        (
            create(
                "c2",
                "SOURCE",
                "generator",
                json!({"stream": "g", "period": "often"}),
            ),
            604,
        ),
        (create("gen1", "SOURCE", "generator", gen_cfg.clone()), 601),
    ];
    for (req, code) in cases {
        let what = format!("{} {} {} {}", req.name, req.r#type, req.target, req.config);
        let err = api.create_connector(req).await.expect_err(&what);
        assert_eq!(hs_code(err.details()), code, "{what}: {}", err.message());
    }
    let err = api
        .create_connector(create(
            "c3",
            "SOURCE",
            "generator",
            json!({"stream": "g", "period": 0}),
        ))
        .await
        .unwrap_err();
    let d: Value = serde_json::from_slice(err.details()).unwrap();
    assert_eq!(
        (d["message"].as_str(), d["extra"]["result"].as_bool()),
        (Some("ConnectorCheckFailed"), Some(false)),
        "{d}"
    );
    assert!(
        !w.data_dir.join("tasks").read_dir().unwrap().any(|e| {
            let id = e.unwrap().file_name().into_string().unwrap();
            id != c.task_id
        }),
        "a failed create leaves no task directory"
    );

    let unknown = || "nosuch".to_string();
    assert_eq!(
        hs_code(
            api.get_connector(wire::GetConnectorRequest { name: unknown() })
                .await
                .unwrap_err()
                .details()
        ),
        600
    );
    assert_eq!(
        hs_code(
            api.pause_connector(wire::PauseConnectorRequest { name: unknown() })
                .await
                .unwrap_err()
                .details()
        ),
        600
    );
    assert_eq!(
        hs_code(
            api.resume_connector(wire::ResumeConnectorRequest { name: unknown() })
                .await
                .unwrap_err()
                .details()
        ),
        600
    );
    assert_eq!(
        hs_code(
            api.delete_connector(wire::DeleteConnectorRequest { name: unknown() })
                .await
                .unwrap_err()
                .details()
        ),
        600
    );
    assert_eq!(
        hs_code(
            api.get_connector_logs(wire::GetConnectorLogsRequest {
                name: unknown(),
                begin: 1,
                count: 1
            })
            .await
            .unwrap_err()
            .details()
        ),
        600
    );
    let alter = |config: &str| wire::AlterConnectorConfigRequest {
        name: "gen1".into(),
        config: config.into(),
    };
    let err = api.alter_connector_config(alter("[1]")).await.unwrap_err();
    assert!(
        err.message().contains("must be a JSON object"),
        "{}",
        err.message()
    );

    let spec = api
        .get_connector_spec(wire::GetConnectorSpecRequest {
            r#type: "SOURCE".into(),
            target: "generator".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .spec;
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let keys: Vec<&String> = spec["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "stream", "spec keeps the connector's key order");
    assert_eq!(
        hs_code(
            api.get_connector_spec(wire::GetConnectorSpecRequest {
                r#type: "SINK".into(),
                target: "nosuch".into()
            })
            .await
            .unwrap_err()
            .details()
        ),
        605
    );

    let list = api
        .list_connectors(wire::ListConnectorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .connectors;
    assert_eq!(
        list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["gen1"]
    );

    // Logs over gRPC: 1-based pages.
    let logs = |begin, count| wire::GetConnectorLogsRequest {
        name: "gen1".into(),
        begin,
        count,
    };
    let page = loop {
        let p = api
            .get_connector_logs(logs(1, 2))
            .await
            .unwrap()
            .into_inner()
            .logs;
        if p.lines().count() == 2 {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let second = api
        .get_connector_logs(logs(2, 1))
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(page.lines().nth(1).map(|l| format!("{l}\n")), Some(second));
    assert_eq!(
        api.get_connector_logs(logs(0, 5))
            .await
            .unwrap()
            .into_inner()
            .logs,
        ""
    );

    // The task's environment has none of the worker's variables.
    let pid = w.task_pid(&c.task_id).expect("task pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("WORKER_SECRET_TOKEN"),
        "worker env leaked into the task"
    );
    assert!(environ.contains("CONNECTOR_LOG_PATH="), "{environ}");

    api.delete_connector(wire::DeleteConnectorRequest {
        name: "gen1".into(),
    })
    .await
    .unwrap();
    assert!(
        api.list_connectors(wire::ListConnectorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .connectors
            .is_empty()
    );
    assert!(
        !w.data_dir.join("tasks").join(&c.task_id).exists(),
        "delete removes the task directory"
    );
    eventually("task process gone after delete", || {
        (!alive(pid)).then_some(())
    });
    // The name is free again: a new task with a new id.
    let again = api
        .create_connector(create("gen1", "SOURCE", "generator", gen_cfg))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(again.task_id, c.task_id);
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn killed_task_is_restarted_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    w.sql(r#"CREATE SOURCE CONNECTOR gen1 FROM generator WITH ("stream" = "s1", "period" = 1, "batchSize" = 3);"#);
    let c = w.describe("gen1");
    let task = c["taskId"].as_str().unwrap().to_string();
    let before = eventually("first position", || {
        generated(&w.describe("gen1")).filter(|n| *n > 0)
    });
    let pid = w.task_pid(&task).expect("pid file");
    kill9(pid);

    let new_pid = eventually("a new task process", || {
        w.task_pid(&task).filter(|p| *p != pid)
    });
    assert!(alive(new_pid));
    let after = eventually("records after the restart", || {
        let c = w.describe("gen1");
        let n = generated(&c)?;
        (c["status"] == "RUNNING" && n > before + 3).then_some(c)
    });
    let process = after["process"].as_str().unwrap();
    assert!(process.contains("restarts: 1"), "{process}");
    assert!(
        process.contains("signal: 9"),
        "the crash is explained: {process}"
    );
}

#[test]
fn killed_worker_brings_tasks_back_to_their_desired_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let w = Worker::start(&data);
    w.sql(r#"CREATE SOURCE CONNECTOR runs FROM generator WITH ("stream" = "s1", "period" = 1);"#);
    w.sql(r#"CREATE SOURCE CONNECTOR paused FROM generator WITH ("stream" = "s2", "period" = 1);"#);
    let runs_before = eventually("position of `runs`", || {
        generated(&w.describe("runs")).filter(|n| *n > 0)
    });
    w.sql("PAUSE CONNECTOR paused;");
    let runs_task = w.describe("runs")["taskId"].as_str().unwrap().to_string();
    let paused_task = w.describe("paused")["taskId"].as_str().unwrap().to_string();
    let old_pid = w.task_pid(&runs_task).unwrap();
    w.kill9();

    // The orphaned task notices its closed stdin and exits.
    eventually("the orphaned task to exit", || {
        (!alive(old_pid)).then_some(())
    });

    let w = Worker::start(&data);
    let runs = eventually("`runs` running again with progress", || {
        let c = w.describe("runs");
        (c["status"] == "RUNNING"
            && generated(&c)? > runs_before
            && w.task_pid(&runs_task).is_some_and(alive))
        .then_some(c)
    });
    assert_eq!(
        runs["taskId"],
        runs_task.as_str(),
        "same task, same offsets"
    );
    let paused = w.describe("paused");
    assert_eq!(paused["status"], "STOPPED", "{paused}");
    assert!(
        w.task_pid(&paused_task).is_none(),
        "a paused task stays stopped"
    );
    let shown = w.sql("SHOW CONNECTORS;");
    assert!(
        shown.contains("| runs ") && shown.contains("| paused "),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_redacted_in_describe_and_get_connector() {
    let db = hstream_io_tests::harness::postgres()
        .await
        .create_database()
        .await;
    db.connect()
        .await
        .batch_execute("CREATE TABLE t1 (k1 INT PRIMARY KEY, v1 TEXT)")
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    assert!(
        db.password.len() >= 8,
        "the harness password must be distinctive for this test"
    );
    let statement = format!(
        r#"CREATE SINK CONNECTOR pg1 TO postgresql WITH ("stream" = "s1", "host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "t1", "tlsMode" = "disable");"#,
        db.host, db.port, db.user, db.password, db.name
    );
    let created = tokio::task::block_in_place(|| w.sql(&statement));
    assert!(created.contains("created SINK connector pg1"), "{created}");

    let (described, json_out, listed) = tokio::task::block_in_place(|| {
        (
            w.sql("DESCRIBE CONNECTOR pg1;"),
            w.cli(&["connector", "describe", "pg1", "--output", "json"])
                .1,
            w.sql("SHOW CONNECTORS;"),
        )
    });
    let c: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(c["config"]["password"], "******");
    assert_eq!(
        c["config"]["user"],
        db.user.as_str(),
        "only secrets are hidden"
    );
    for (what, text) in [
        ("DESCRIBE", &described),
        ("describe --output json", &json_out),
        ("SHOW", &listed),
    ] {
        assert!(
            !text.contains(&db.password),
            "password leaked into {what}: {text}"
        );
    }
    assert!(described.contains("******"), "{described}");

    let mut api = HStreamApiClient::connect(format!("http://127.0.0.1:{}", w.port))
        .await
        .unwrap();
    let got = api
        .get_connector(wire::GetConnectorRequest { name: "pg1".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !got.config.contains(&db.password) && got.config.contains("******"),
        "{}",
        got.config
    );
    let listed = api
        .list_connectors(wire::ListConnectorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .connectors;
    assert!(
        !listed[0].config.contains(&db.password),
        "{}",
        listed[0].config
    );
    let logs = api
        .get_connector_logs(wire::GetConnectorLogsRequest {
            name: "pg1".into(),
            begin: 1,
            count: 100_000,
        })
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert!(!logs.contains(&db.password), "password in app.log");

    // The task file holds the secret (the task needs it) but only its owner can read it.
    use std::os::unix::fs::PermissionsExt;
    let file = w
        .data_dir
        .join("tasks")
        .join(&got.task_id)
        .join("config.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// `GET path` on the metrics port: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn metrics_endpoint_reports_every_task() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let w = Worker::start_with(
        &tmp.path().join("data"),
        free_port(),
        &[
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--task-open-files-limit",
            "321",
        ],
    );
    w.sql(r#"CREATE SOURCE CONNECTOR gen1 FROM generator WITH ("stream" = "s1", "period" = 1, "batchSize" = 4);"#);
    let labels = r#"connector="gen1",type="SOURCE",target="generator""#;
    let body = eventually("delivered records in /metrics", || {
        let (status, body) = http_get(metrics_port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let line = format!("hstream_io_task_delivered_records_total{{{labels}}} ");
        let n: u64 = body
            .lines()
            .find_map(|l| l.strip_prefix(&line))?
            .parse()
            .unwrap();
        (n > 0).then_some(body)
    });
    assert!(
        body.contains(&format!("hstream_io_task_up{{{labels}}} 1")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "hstream_io_task_status{{{labels},status=\"RUNNING\"}} 1"
        )),
        "{body}"
    );
    assert!(
        body.contains("# TYPE hstream_io_task_restarts_total counter"),
        "{body}"
    );
    assert!(!body.contains("s1"), "no config values in metrics: {body}");
    assert_eq!(
        http_get(metrics_port, "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(http_get(metrics_port, "/readyz").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(metrics_port, "/nope").0, "HTTP/1.1 404 Not Found");

    // The per-task limit is applied to the task process.
    let task = w.describe("gen1")["taskId"].as_str().unwrap().to_string();
    let pid = w.task_pid(&task).expect("task pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["321", "321"],
        "{open_files}"
    );
}

/// The replication slots named `slot` and publications named `publication`
/// on the harness's PostgreSQL.
async fn slot_and_publication(
    pg: &tokio_postgres::Client,
    slot: &str,
    publication: &str,
) -> (bool, bool) {
    let slots: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    let publications: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .unwrap()
        .get(0);
    (slots == 1, publications == 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_connector_drops_the_postgresql_slot_only_when_asked() {
    let db = hstream_io_tests::harness::postgres()
        .await
        .create_database()
        .await;
    let pg = db.connect().await;
    pg.batch_execute(
        "CREATE TABLE t1 (k1 INT PRIMARY KEY, v1 TEXT); INSERT INTO t1 VALUES (1, 'a')",
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    let create = |name: &str, extra: &str| {
        format!(
            r#"CREATE SOURCE CONNECTOR {name} FROM postgresql WITH ("stream" = "{name}", "host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "t1"{extra});"#,
            db.host, db.port, db.user, db.password, db.name
        )
    };

    // slotOnDelete = drop, default slot and publication (named after the task id): both dropped.
    tokio::task::block_in_place(|| w.sql(&create("pgdrop", r#", "slotOnDelete" = "drop""#)));
    let task_id = tokio::task::block_in_place(|| w.describe("pgdrop"))["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let slot = format!("hstream_io_{}", task_id.replace('-', "_"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while slot_and_publication(&pg, &slot, &slot).await != (true, true) {
        assert!(Instant::now() < deadline, "slot {slot} was never created");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = tokio::task::block_in_place(|| w.sql("DROP CONNECTOR pgdrop;"));
    assert!(dropped.contains("pgdrop"), "{dropped}");
    assert_eq!(
        slot_and_publication(&pg, &slot, &slot).await,
        (false, false),
        "DROP CONNECTOR with slotOnDelete = drop must drop the slot and the task's own publication"
    );

    // slotOnDelete = keep (the default): the slot and the named publication stay.
    tokio::task::block_in_place(|| {
        w.sql(&create(
            "pgkeep",
            r#", "slotName" = "kept_slot", "publication" = "kept_pub""#,
        ))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while slot_and_publication(&pg, "kept_slot", "kept_pub").await != (true, true) {
        assert!(
            Instant::now() < deadline,
            "slot kept_slot was never created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| w.sql("DROP CONNECTOR pgkeep;"));
    assert_eq!(
        slot_and_publication(&pg, "kept_slot", "kept_pub").await,
        (true, true),
        "slotOnDelete = keep must keep the slot"
    );
    // A kept slot may still be held for a moment by the stopped task's walsender.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = pg
        .batch_execute("SELECT pg_drop_replication_slot('kept_slot')")
        .await
    {
        assert!(Instant::now() < deadline, "cannot drop kept_slot: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A cleanup that cannot run (the slot is held by another session) is an error
    // and keeps the connector, stopped, with the error; it is not half-deleted.
    tokio::task::block_in_place(|| {
        w.sql(&create(
            "pgheld",
            r#", "slotOnDelete" = "drop", "slotName" = "held_slot""#,
        ))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !slot_and_publication(&pg, "held_slot", "held_slot").await.0 {
        assert!(
            Instant::now() < deadline,
            "slot held_slot was never created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| w.sql("PAUSE CONNECTOR pgheld;"));
    // Another session holds the slot: pg_recvlogical reading it.
    let recvlogical = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().join("bin/pg_recvlogical")))
        .find(|p| p.exists())
        .expect("pg_recvlogical next to the harness's PostgreSQL");
    let mut holder = Command::new(recvlogical)
        .args([
            "-h",
            &db.host,
            "-p",
            &db.port.to_string(),
            "-U",
            &db.user,
            "-d",
            &db.name,
        ])
        .args(["--slot", "held_slot", "--start", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", "publication_names=held_slot"])
        .env("PGPASSWORD", &db.password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pg_recvlogical");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = 'held_slot' AND active_pid IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if active == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never took the slot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _, err) = tokio::task::block_in_place(|| w.cli(&["sql", "DROP CONNECTOR pgheld;"]));
    assert_ne!(code, 0, "DROP must fail while the slot is held");
    assert!(
        err.contains("cleanup failed") && err.contains("held_slot"),
        "{err}"
    );
    let described = tokio::task::block_in_place(|| w.describe("pgheld"));
    assert_eq!(described["status"], "STOPPED", "{described}");
    let _ = holder.kill();
    let _ = holder.wait();
    // Once the slot is free, DROP goes through and drops it.
    tokio::task::block_in_place(|| w.sql("DROP CONNECTOR pgheld;"));
    assert!(!slot_and_publication(&pg, "held_slot", "held_slot").await.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_stats_answers_connector_stats_per_name() {
    use wire::stat_type::Stat;
    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    tokio::task::block_in_place(|| {
        w.sql(r#"CREATE SOURCE CONNECTOR gen1 FROM generator WITH ("stream" = "s1", "period" = 1, "batchSize" = 4);"#)
    });
    let mut api = HStreamApiClient::connect(format!("http://127.0.0.1:{}", w.port))
        .await
        .unwrap();
    let conn = |k: wire::ConnectorStats| wire::StatType {
        stat: Some(Stat::ConnStat(k as i32)),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let response = loop {
        let r = api
            .get_stats(wire::GetStatsRequest {
                stats: vec![
                    conn(wire::ConnectorStats::DeliveredInRecords),
                    conn(wire::ConnectorStats::IsAlive),
                    wire::StatType { stat: None },
                    // Upstream's streamStat = AppendInRecords (1).
                    wire::StatType {
                        stat: Some(Stat::StreamStat(1)),
                    },
                ],
            })
            .await
            .unwrap()
            .into_inner();
        if r.stats_values[0]
            .stat_values
            .get("gen1")
            .is_some_and(|&n| n > 0)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no delivered records in {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(response.stats_values.len(), 2, "{response:?}");
    assert_eq!(
        response.stats_values[1].stat_values.get("gen1"),
        Some(&1),
        "IsAlive of a RUNNING connector: {response:?}"
    );
    assert_eq!(response.errors.len(), 2, "{response:?}");
    assert!(response.errors[0].message.contains("connector stats"));
    // The error names the stat that was asked for, so a client can match it.
    assert_eq!(
        response.errors[1].stat_type,
        Some(wire::StatType {
            stat: Some(Stat::StreamStat(1))
        }),
        "{response:?}"
    );

    // Paused: not alive any more.
    tokio::task::block_in_place(|| w.sql("PAUSE CONNECTOR gen1;"));
    let r = api
        .get_stats(wire::GetStatsRequest {
            stats: vec![conn(wire::ConnectorStats::IsAlive)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stats_values[0].stat_values.get("gen1"), Some(&0), "{r:?}");
}

/// `(count, sum(id), sum(v))` of `pipe` in MariaDB.
async fn mariadb_sums(conn: &mut mysql_async::Conn) -> (i64, i64, i64) {
    use mysql_async::prelude::Queryable;
    let row: (i64, i64, i64) = conn
        .query_first("SELECT COUNT(*), CAST(COALESCE(SUM(id), 0) AS SIGNED), CAST(COALESCE(SUM(v), 0) AS SIGNED) FROM pipe")
        .await
        .unwrap()
        .unwrap();
    row
}

/// `(count, sum(id), sum(v))` of `pipe` in PostgreSQL.
async fn postgres_sums(pg: &tokio_postgres::Client) -> (i64, i64, i64) {
    let row = pg
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(id), 0)::BIGINT, COALESCE(SUM(v), 0)::BIGINT FROM pipe",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Issue 7's "kill -9 of a task process": a MariaDB → PostgreSQL pipeline created with SQL on
/// `serve`, its sink task and then its source task killed with SIGKILL while rows flow; each is
/// restarted and the PostgreSQL table ends equal to MariaDB's (no row lost, none applied twice:
/// the sums would differ), including changes made after the kills.
#[tokio::test(flavor = "multi_thread")]
async fn killed_pipeline_tasks_restart_and_lose_or_repeat_nothing() {
    use mysql_async::prelude::Queryable;
    let my = hstream_io_tests::harness::mariadb()
        .await
        .create_database()
        .await;
    let pgdb = hstream_io_tests::harness::postgres()
        .await
        .create_database()
        .await;
    let mut conn = my.connect().await;
    conn.query_drop("CREATE TABLE pipe (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    let pg = pgdb.connect().await;
    pg.batch_execute("CREATE TABLE pipe (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    // Rows written in small transactions while the tasks run and are killed.
    async fn write(conn: &mut mysql_async::Conn, from: i64, to: i64) {
        use mysql_async::prelude::Queryable;
        for start in (from..to).step_by(500) {
            let values: Vec<String> = (start..(start + 500).min(to))
                .map(|i| format!("({i}, {})", i % 97))
                .collect();
            conn.query_drop(format!("INSERT INTO pipe VALUES {}", values.join(",")))
                .await
                .unwrap();
        }
    }
    write(&mut conn, 0, 20_000).await;

    let tmp = tempfile::tempdir().unwrap();
    let w = Worker::start(&tmp.path().join("data"));
    let source = format!(
        r#"CREATE SOURCE CONNECTOR pipe_source FROM mysql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "pipe", "stream" = "pipe", "snapshotChunkSize" = 2000);"#,
        my.host, my.port, my.user, my.password, my.name
    );
    let sink = format!(
        r#"CREATE SINK CONNECTOR pipe_sink TO postgresql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "pipe", "stream" = "pipe");"#,
        pgdb.host, pgdb.port, pgdb.user, pgdb.password, pgdb.name
    );
    tokio::task::block_in_place(|| {
        w.sql(&source);
        w.sql(&sink);
    });

    let kill = |name: &str| -> (String, u32) {
        let task = tokio::task::block_in_place(|| w.describe(name))["taskId"]
            .as_str()
            .unwrap()
            .to_string();
        let pid = eventually("a task pid", || w.task_pid(&task));
        kill9(pid);
        (task, pid)
    };
    // Kill the sink once rows have started to arrive, while more are written.
    let deadline = Instant::now() + Duration::from_secs(120);
    while postgres_sums(&pg).await.0 == 0 {
        assert!(Instant::now() < deadline, "no row reached PostgreSQL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sink_task, sink_pid) = kill("pipe_sink");
    write(&mut conn, 20_000, 40_000).await;
    // Then the source, in the middle of more writes.
    let (source_task, source_pid) = kill("pipe_source");
    write(&mut conn, 40_000, 60_000).await;
    conn.query_drop("UPDATE pipe SET v = v + 1000 WHERE id % 10 = 0")
        .await
        .unwrap();
    conn.query_drop("DELETE FROM pipe WHERE id % 7 = 3")
        .await
        .unwrap();

    let expected = mariadb_sums(&mut conn).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = postgres_sums(&pg).await;
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL {got:?} never matched MariaDB {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Row by row, not only the sums.
    let rows = pg
        .query("SELECT id, v FROM pipe ORDER BY id", &[])
        .await
        .unwrap();
    let pg_rows: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let my_rows: Vec<(i64, i64)> = conn
        .query("SELECT id, v FROM pipe ORDER BY id")
        .await
        .unwrap();
    assert_eq!(pg_rows.len(), my_rows.len());
    assert!(pg_rows == my_rows, "the tables differ row by row");
    // Both tasks were restarted by the worker (new processes, one restart each).
    for (name, task, pid) in [
        ("pipe_sink", &sink_task, sink_pid),
        ("pipe_source", &source_task, source_pid),
    ] {
        assert!(
            w.task_pid(task).is_some_and(|p| p != pid),
            "{name} was not restarted"
        );
        let c = tokio::task::block_in_place(|| w.describe(name));
        assert_eq!(c["status"], "RUNNING", "{name}: {c}");
        let process = c["process"].as_str().unwrap_or_default();
        assert!(process.contains("restarts: 1"), "{name}: {process}");
    }
    // The source was killed after its snapshot: the restart resumed from the stored binlog
    // position (stored when the snapshot ended), it did not take the snapshot again.
    let log = std::fs::read_to_string(w.data_dir.join("tasks").join(&source_task).join("app.log"))
        .unwrap();
    assert_eq!(log.matches("snapshot started").count(), 1, "{log}");
}
