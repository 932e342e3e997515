//! Secrets never appear in `check` output, logs or error messages: the real
//! binary, real database servers, wrong and right passwords, grep everything
//! the process printed or wrote.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use hstream_io_tests::harness;
use hstream_io_tests::hserver::{Serve, TaskProcess, binary};
use serde_json::{Value, json};

/// A password nobody else would print by accident.
fn secret() -> String {
    format!("Pw-{}-never-print-me", uuid_like())
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Runs `check` and returns (the parsed result, stdout + stderr).
fn check(connector: &str, dir: &std::path::Path, config: &Value) -> (Value, String) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(binary())
        .args([connector, "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let result = serde_json::from_str(stdout.lines().next().unwrap_or("null")).unwrap();
    (result, stdout + &String::from_utf8_lossy(&out.stderr))
}

fn assert_absent(secret: &str, what: &str, text: &str) {
    assert!(
        !text.contains(secret),
        "the password leaked into {what}: {text}"
    );
}

struct Target {
    connector: &'static str,
    host: String,
    port: u16,
    user: String,
    database: String,
    right_password: String,
}

async fn targets() -> Vec<Target> {
    let pg = harness::postgres().await.create_database().await;
    let my = harness::mariadb().await.create_database().await;
    vec![
        Target {
            connector: "sink-postgresql",
            host: pg.host.clone(),
            port: pg.port,
            user: pg.user.clone(),
            database: pg.name.clone(),
            right_password: pg.password.clone(),
        },
        Target {
            connector: "sink-mysql",
            host: my.host.clone(),
            port: my.port,
            user: my.user.clone(),
            database: my.name.clone(),
            right_password: my.password.clone(),
        },
    ]
}

fn connector_config(t: &Target, password: &Value) -> Value {
    json!({
        "stream": "secrets", "host": t.host, "port": t.port, "user": t.user,
        "password": password, "database": t.database, "table": "no_such_table"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_never_appear_in_check_output_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let client = hstream_io_runtime::stream::Client::connect(&serve.url)
        .await
        .unwrap();
    client
        .ensure_stream("secrets", Default::default())
        .await
        .unwrap();

    for t in targets().await {
        let wrong = secret();
        let dir = tmp.path().join(t.connector);

        // The spec marks the password as a secret.
        let spec: Value = serde_json::from_slice(
            &Command::new(binary())
                .args([t.connector, "spec"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(
            spec["properties"]["password"]["writeOnly"], true,
            "{}",
            t.connector
        );

        // Wrong password: the check fails on the connection, without quoting it.
        let config = json!({"hstream": {"serviceUrl": serve.url}, "connector": connector_config(&t, &json!(wrong))});
        let (result, output) = check(t.connector, &dir.join("wrong"), &config);
        assert_eq!(result["result"], false, "{}: {result}", t.connector);
        assert_eq!(result["type"], "CONNECTION", "{}: {result}", t.connector);
        assert_absent(&wrong, "check output", &output);

        // Right password, missing table: a later check fails, still no password.
        let config = json!({"hstream": {"serviceUrl": serve.url}, "connector": connector_config(&t, &json!(t.right_password))});
        let (result, output) = check(t.connector, &dir.join("right"), &config);
        assert_eq!(result["result"], false, "{}: {result}", t.connector);
        assert!(
            result["message"]
                .as_str()
                .unwrap()
                .contains("no_such_table"),
            "{result}"
        );
        assert_absent(&t.right_password, "check output", &output);

        // A schema error on the password itself: the value is not echoed.
        let bad = json!({"hstream": {"serviceUrl": serve.url},
            "connector": connector_config(&t, &json!(987_654_321_987u64))});
        let (result, output) = check(t.connector, &dir.join("typed"), &bad);
        assert_eq!(result["type"], "CONFIG");
        assert_absent("987654321987", "check output", &output);

        // run with the wrong password: exit 3, nothing in stdout, stderr or app.log.
        let config = json!({"hstream": {"serviceUrl": serve.url}, "connector": connector_config(&t, &json!(wrong))});
        let mut task =
            TaskProcess::start(&dir.join("run"), t.connector, &config, HashMap::new(), &[]);
        let status = task
            .wait_exit(Duration::from_secs(60))
            .expect("the task exits");
        assert_eq!(status.code(), Some(3), "{}: {}", t.connector, task.stderr());
        assert_absent(&wrong, "stderr", &task.stderr());
        assert_absent(&wrong, "app.log", &task.app_log());
        assert!(!task.app_log().is_empty(), "app.log was written");
        let stdout: String = task.events().iter().map(|e| format!("{e:?}")).collect();
        assert_absent(&wrong, "stdout", &stdout);
    }
}
