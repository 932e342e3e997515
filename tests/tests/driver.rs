//! The binary launched exactly as HServer launches a connector image: `check`
//! parsed from stdout, `run` with piped stdin/stdout under a fake HServer that
//! speaks the real channel protocol, against a real `hstream-io serve`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use hstream_io_tests::hserver::{Event, Serve, TaskProcess, binary};
use serde_json::{Value, json};

fn task_config(url: &str, connector: Value) -> Value {
    json!({"hstream": {"serviceUrl": url}, "connector": connector, "task": "6f0e2c56-6c0b-4c1e-9d8a-3f3e7b0b7a11"})
}

/// `hstream-io <connector> check --config <file>`: (exit code, the CheckResult line).
fn check(connector: &str, dir: &std::path::Path, config: &Value) -> (i32, Value) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(binary())
        .args([connector, "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "check must print exactly one line, got: {stdout}"
    );
    (
        out.status.code().unwrap(),
        serde_json::from_str(lines[0]).unwrap(),
    )
}

fn requests<'a>(
    events: &'a [Event],
    wanted: &'a str,
) -> impl Iterator<Item = (&'a Value, Instant)> + 'a {
    events.iter().filter_map(move |e| match e {
        Event::Request { name, body, at } if name == wanted => Some((body, *at)),
        _ => None,
    })
}

fn assert_only_protocol(events: &[Event]) {
    let noise: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Noise(_)))
        .collect();
    assert!(noise.is_empty(), "non-protocol lines on stdout: {noise:?}");
}

fn delivered(events: &[Event]) -> u64 {
    requests(events, "Report")
        .map(|(b, _)| b["deliveredRecords"].as_u64().unwrap())
        .sum()
}

fn stored_position(task: &TaskProcess) -> u64 {
    let text = task
        .kv()
        .get("source_position")
        .cloned()
        .expect("source_position stored");
    serde_json::from_str::<Value>(&text).unwrap()["generatedRecords"]
        .as_u64()
        .unwrap()
}

async fn count_stream(url: &str, stream: &str) -> u64 {
    use hstream_io_runtime::stream::{Client, ReaderOffset};
    let client = Client::connect(url).await.unwrap();
    let mut total = 0;
    for shard in client.list_shards(stream).await.unwrap() {
        let mut reader = client
            .shard_reader(stream, shard.shard_id, ReaderOffset::Earliest)
            .await
            .unwrap();
        loop {
            let got = reader.read(100).await.unwrap();
            if got.is_empty() {
                break;
            }
            total += got.len() as u64;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn hserver_launch_check_run_report_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let config = task_config(
        &serve.url,
        json!({"stream": "driver", "batchSize": 5, "period": 1}),
    );

    let (code, result) = check("source-generator", &tmp.path().join("check"), &config);
    assert_eq!(code, 0);
    assert_eq!(
        result,
        json!({"result": true, "type": null, "message": null, "detail": null})
    );

    let started = Instant::now();
    let mut task = TaskProcess::start(
        &tmp.path().join("task"),
        "source-generator",
        &config,
        HashMap::new(),
        &[],
    );
    let (_, _, first_report) = task
        .wait_for(Duration::from_secs(15), |name, body| {
            name == "Report" && body["offsets"].is_array()
        })
        .expect("a Report every 3 s");
    eprintln!("first Report after {:?}", first_report - started);
    task.wait_for(Duration::from_secs(15), |name, body| {
        name == "Report" && body["deliveredRecords"].as_u64() > Some(0)
    })
    .expect("a Report with delivered records");

    let stop_sent = Instant::now();
    task.send_stop();
    let status = task
        .wait_exit(Duration::from_secs(5))
        .expect("exit within 5 s of the stop");
    eprintln!("exited {:?} after the stop", stop_sent.elapsed());
    assert_eq!(status.code(), Some(0), "stderr: {}", task.stderr());

    let events = task.events();
    assert_only_protocol(&events);
    let final_kv_set = requests(&events, "KvSet")
        .filter(|(b, at)| b["key"] == "source_position" && *at >= stop_sent)
        .count();
    assert!(
        final_kv_set >= 1 || stored_position(&task) == delivered(&events),
        "no final KvSet after the stop"
    );
    let generated = stored_position(&task);
    assert_eq!(
        generated,
        delivered(&events),
        "the stored position must equal what reports counted"
    );
    assert_eq!(
        count_stream(&serve.url, "driver").await,
        generated,
        "every committed record is in the stream"
    );
    let app_log = task.app_log();
    assert!(
        app_log.contains("task stopped cleanly"),
        "app.log: {app_log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_from_the_stored_position_and_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let config = task_config(
        &serve.url,
        json!({"stream": "resume", "batchSize": 5, "period": 1, "totalRecords": 103}),
    );
    let kv = HashMap::from([(
        "source_position".to_string(),
        r#"{"generatedRecords":100}"#.to_string(),
    )]);
    let mut task = TaskProcess::start(
        &tmp.path().join("task"),
        "source-generator",
        &config,
        kv,
        &[],
    );
    let status = task
        .wait_exit(Duration::from_secs(20))
        .expect("completes on its own");
    assert_eq!(status.code(), Some(0), "stderr: {}", task.stderr());
    assert_eq!(stored_position(&task), 103);
    assert_eq!(
        count_stream(&serve.url, "resume").await,
        3,
        "only the 3 missing records are generated"
    );
    assert_only_protocol(&task.events());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_gracefully_and_stores_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let config = task_config(
        &serve.url,
        json!({"stream": "term", "batchSize": 10, "period": 1}),
    );
    let mut task = TaskProcess::start(
        &tmp.path().join("task"),
        "source-generator",
        &config,
        HashMap::new(),
        &[],
    );
    task.wait_for(Duration::from_secs(15), |name, body| {
        name == "KvSet" && body["key"] == "source_position"
    })
    .expect("the position is stored while running");
    let sent = Instant::now();
    task.signal(15);
    let status = task
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", task.stderr());
    let events = task.events();
    assert!(
        requests(&events, "Report").any(|(_, at)| at >= sent),
        "a final Report after SIGTERM"
    );
    assert_eq!(
        count_stream(&serve.url, "term").await,
        stored_position(&task)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_sigint_exits_at_once_with_130() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let config = task_config(
        &serve.url,
        json!({"stream": "int", "batchSize": 10, "period": 1}),
    );
    let mut task = TaskProcess::start(
        &tmp.path().join("task"),
        "source-generator",
        &config,
        HashMap::new(),
        &[],
    );
    task.wait_for(Duration::from_secs(15), |name, body| {
        name == "KvSet" && body["key"] == "source_position"
    })
    .expect("the position is stored while running");
    // Hold the graceful stop on its final KvSet, then interrupt again.
    task.stop_answering_kv_set();
    let sent = Instant::now();
    task.signal(2);
    task.wait_for_since(sent, Duration::from_secs(10), |name, _| name == "KvSet")
        .expect("the graceful stop reaches its final KvSet");
    assert!(
        task.wait_exit(Duration::ZERO).is_none(),
        "still draining, held on the KvSet"
    );
    task.signal(2);
    let status = task
        .wait_exit(Duration::from_secs(5))
        .expect("second SIGINT exits at once");
    assert_eq!(status.code(), Some(130), "stderr: {}", task.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn blackhole_reads_everything_and_resumes_without_redelivery() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let gen_config = task_config(
        &serve.url,
        json!({"stream": "bh", "batchSize": 50, "period": 1, "totalRecords": 200}),
    );
    let mut generator = TaskProcess::start(
        &tmp.path().join("gen"),
        "source-generator",
        &gen_config,
        HashMap::new(),
        &[],
    );
    assert_eq!(
        generator
            .wait_exit(Duration::from_secs(30))
            .and_then(|s| s.code()),
        Some(0)
    );

    let sink_config = task_config(&serve.url, json!({"stream": "bh"}));
    let mut sink = TaskProcess::start(
        &tmp.path().join("sink"),
        "sink-blackhole",
        &sink_config,
        HashMap::new(),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered(&sink.events()) < 200 && Instant::now() < deadline {
        sink.wait_for(Duration::from_secs(5), |name, _| name == "Report");
    }
    sink.send_stop();
    assert_eq!(
        sink.wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0),
        "stderr: {}",
        sink.stderr()
    );
    assert_eq!(delivered(&sink.events()), 200);
    assert_only_protocol(&sink.events());
    let kv = sink.kv();
    let offsets: HashMap<String, String> =
        serde_json::from_str(&kv["SinkOffsetsManagerImpl_offsets"]).unwrap();
    assert_eq!(offsets.len(), 1, "one shard, one offset: {offsets:?}");
    let report_offsets = requests(&sink.events(), "Report").last().unwrap().0["offsets"].clone();
    assert_eq!(
        report_offsets[0]["offset"],
        json!(offsets.values().next().unwrap())
    );

    // Restart with the stored offsets: nothing is delivered again.
    let mut again = TaskProcess::start(
        &tmp.path().join("sink2"),
        "sink-blackhole",
        &sink_config,
        kv,
        &[],
    );
    again
        .wait_for(Duration::from_secs(15), |name, _| name == "Report")
        .expect("a report");
    again.send_stop();
    assert_eq!(
        again
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(
        delivered(&again.events()),
        0,
        "records before the stored offset were delivered again"
    );
}

#[test]
fn check_reports_every_error_with_pointer_and_message() {
    let tmp = tempfile::tempdir().unwrap();
    let config = task_config(
        "hstream://127.0.0.1:6570",
        json!({"batchSize": "5", "period": 500, "keyfeild": "k1"}),
    );
    let (code, result) = check("source-generator", tmp.path(), &config);
    assert_eq!(code, 0, "check exits 0 whatever the result");
    assert_eq!(result["result"], false);
    assert_eq!(result["type"], "CONFIG");
    let detail: Vec<(String, String)> = result["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["pointer"].as_str().unwrap().into(),
                d["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("/batchSize", "must be an integer, but is a string"),
        ("/period", "must be at most 100"),
        ("/stream", "is required but missing"),
        ("/keyfeild", "unknown key; did you mean `keyField`?"),
    ];
    for (pointer, message) in expected {
        assert!(
            detail.iter().any(|(p, m)| p == pointer && m == message),
            "missing {pointer}: {message} in {detail:?}"
        );
    }
    assert_eq!(detail.len(), expected.len(), "{detail:?}");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid config: 4 errors")
    );
}

#[test]
fn run_with_an_invalid_config_exits_2_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let config = task_config("hstream://127.0.0.1:1", json!({"stream": "s", "period": 0}));
    let mut task = TaskProcess::start(tmp.path(), "source-generator", &config, HashMap::new(), &[]);
    let status = task.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(2));
    for output in [task.stderr(), task.app_log()] {
        assert!(output.contains("/period: must be at least 1"), "{output}");
    }
    assert!(task.events().is_empty(), "nothing on stdout");
}

#[test]
fn unreachable_stream_service_is_a_clear_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let port = hstream_io_tests::hserver::free_port();
    let config = task_config(
        &format!("hstream://127.0.0.1:{port}"),
        json!({"stream": "s", "period": 1}),
    );
    let mut task = TaskProcess::start(tmp.path(), "source-generator", &config, HashMap::new(), &[]);
    let status = task.wait_exit(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(3), "stderr: {}", task.stderr());
    assert!(
        task.stderr().contains(&format!(
            "cannot connect to HStream at hstream://127.0.0.1:{port}"
        )),
        "{}",
        task.stderr()
    );
}

#[test]
fn spec_is_one_json_line_with_ui_keys() {
    for (connector, expect_groups) in [("source-generator", false), ("sink-blackhole", true)] {
        let out = Command::new(binary())
            .args([connector, "spec"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let spec: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            spec["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(spec["additionalProperties"], false);
        assert_eq!(spec["required"], json!(["stream"]));
        let order = spec["ui:order"].as_array().unwrap();
        assert_eq!(order[0], "stream");
        let has_group = order
            .iter()
            .any(|o| o["ui:type"] == "group" && o["name"] == "Error Handling");
        assert_eq!(has_group, expect_groups, "{connector}: {order:?}");
    }
}

#[test]
fn connectors_are_listed_for_people_and_scripts() {
    let out = Command::new(binary()).arg("connectors").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "source-generator\tsource\tgenerator"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "sink-blackhole\tsink\tblackhole"),
        "{text}"
    );
    let out = Command::new(binary())
        .args(["connectors", "--output", "json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "sink-blackhole" && c["type"] == "SINK")
    );
    let out = Command::new(binary())
        .args(["source-generater", "spec"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `source-generator`"));
}

#[test]
fn checked_in_schemas_and_docs_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    for (what, dir) in [("schemas", "schemas"), ("docs", "docs/connectors")] {
        let out = Command::new(binary())
            .args([what, "--check", "--out"])
            .arg(root.join(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what} drifted: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
