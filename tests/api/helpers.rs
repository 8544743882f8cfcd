//! A flowgate server on port 0 with its own copy of the flows and its own database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flowgate::config::Settings;
use flowgate::startup::Application;
use serde_json::Value;
use tempfile::TempDir;

pub const WEBSHOP_KEY: &str = "fg_acme_webshop_example";
pub const ERP_KEY: &str = "fg_acme_erp_example";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub queue: flowgate::queue::Queue,
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub fn repo_flows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

/// A test server's settings: the shipped flows copied into `dir/flows`, a SQLite
/// store in `dir`, any free port on loopback.
pub fn settings_in(dir: &Path) -> Settings {
    let flows = dir.join("flows");
    copy_dir(&repo_flows(), &flows);
    Settings {
        listen: "127.0.0.1:0".into(),
        flows,
        store: format!("sqlite://{}", dir.join("flowgate.db").display()),
        workers: 2,
        reload_interval: Duration::from_millis(100),
        // Tests share one PostgreSQL server (100 connections) and run in parallel.
        pool_size: 4,
        // The test binary cannot be a jq worker; the flowgate binary is.
        executor_binary: Some(env!("CARGO_BIN_EXE_flowgate").into()),
        // Event receivers in tests are stubs on loopback.
        subscriptions_deny_private: false,
        ..Settings::default()
    }
}

impl TestApp {
    /// The shipped example flows.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, |_| {}).await
    }

    /// `flows` may add or change files in the copied flows dir; `settings` may
    /// change settings before start.
    pub async fn spawn_with(
        flows: impl FnOnce(&Path),
        settings: impl FnOnce(&mut Settings),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings_in(dir.path());
        flows(&s.flows);
        settings(&mut s);
        let app = Application::build(s).await.expect("server starts");
        let base = format!("http://{}", app.local_addr());
        let queue = app.queue();
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            client: reqwest::Client::new(),
            dir,
            queue,
        }
    }

    pub fn flows_dir(&self) -> PathBuf {
        self.dir.path().join("flows")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send().await.unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut r = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send().await.unwrap()
    }

    /// Polls the status URL until the message reaches a final status (or `limit` passes).
    pub async fn wait_final(
        &self,
        tenant_trigger: &str,
        id: &str,
        key: &str,
        limit: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let res = self
                .get(&format!("/{tenant_trigger}/messages/{id}"), Some(key))
                .await;
            if res.status() == 200 {
                // Deeper than serde_json reads by itself: documents may be as deep as
                // the server accepts.
                let text = res.text().await.unwrap();
                let doc = flowgate::domain::depth::parse_stored(&text).unwrap();
                let status = doc["status"].as_str().unwrap_or_default().to_owned();
                if [
                    "succeeded",
                    "failed",
                    "dead",
                    "skipped",
                    "rejected",
                    "cancelled",
                ]
                .contains(&status.as_str())
                {
                    return doc;
                }
                if tokio::time::Instant::now() > deadline {
                    return doc;
                }
            } else if tokio::time::Instant::now() > deadline {
                panic!("message {id} not found: {}", res.status());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts `body` to `path` (no key) expecting 202, then waits (up to 10 s) for
    /// the message to finish: its id and its status document.
    pub async fn post_until_final(&self, path: &str, body: &Value) -> (String, Value) {
        let res = self.post_json(path, None, body).await;
        assert_eq!(res.status(), 202, "{path}");
        let id = res.json::<Value>().await.unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let doc = self
            .wait_final(&path[1..], &id, "", Duration::from_secs(10))
            .await;
        (id, doc)
    }

    /// A counter from `/_metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics(&[name]).await[0]
    }

    /// Several values from one scrape of `/_metrics`, so they describe one moment.
    pub async fn metrics(&self, names: &[&str]) -> Vec<f64> {
        let text = self.get("/_metrics", None).await.text().await.unwrap();
        names
            .iter()
            .map(|name| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                    .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
            })
            .collect()
    }
}

/// A server with one more tenant: its `_tenant.yaml` and its triggers (name, file text).
pub async fn spawn_tenant(tenant: &str, tenant_yaml: String, triggers: &[(&str, &str)]) -> TestApp {
    let tenant = tenant.to_owned();
    let triggers: Vec<(String, String)> = triggers
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    TestApp::spawn_with(
        move |flows| {
            write_flow(flows, &format!("{tenant}/_tenant.yaml"), &tenant_yaml);
            for (name, text) in &triggers {
                write_flow(flows, &format!("{tenant}/{name}.yaml"), text);
            }
        },
        |_| {},
    )
    .await
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
/// Tests wait for a state this way, never by sleeping for a guessed time.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes a file under the flows dir (creating folders).
pub fn write_flow(flows: &Path, rel: &str, text: &str) {
    let path = flows.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An executor like a server's, whose jq workers are this build's `flowgate`.
pub fn executor() -> flowgate::engine::Executor {
    use flowgate::engine::{Executor, Limits, Sandbox, SandboxOptions};
    Executor::new(
        Sandbox::new(SandboxOptions {
            binary: env!("CARGO_BIN_EXE_flowgate").into(),
            max_workers: 4,
            tenant_max: 4,
        }),
        Limits::default(),
    )
}
