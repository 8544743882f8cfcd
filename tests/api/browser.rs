//! The web UI in headless Chromium, driven through chromedriver's WebDriver API
//! (plain JSON over HTTP with reqwest): log in, open a trigger's log history,
//! expand a failed message, see its attempts, fix the flow, press Replay and see
//! the new execution succeed; see each line's lane and error, filter by lane;
//! then open a delivery in the event delivery log. And a subscription made in
//! the UI: switched on, its ping seen in its delivery log, its secret rotated.
//! With a `read` token: each line's consumer, the consumer filter, and no
//! button that changes anything.
//! Screenshots go to target/test-output/. The driver is shared with the other
//! browser tests (`consumer_doc.rs`).
//!
//! Without chromium the test is skipped with a notice, unless `CI` is set.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, LANE_FLOW_FIXED, READ_TOKEN, admin_app, one_good_one_bad};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

pub(crate) struct Driver {
    child: Child,
    client: reqwest::Client,
    session: String,
    base: String,
}

impl Drop for Driver {
    /// Ends the browser session (a failed test ends here too, so this is a plain
    /// blocking request), then chromedriver.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_owned();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) async fn start(chromium: PathBuf, chromedriver: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut driver = Self {
            child,
            client,
            session: String::new(),
            base,
        };
        for _ in 0..100 {
            if let Ok(r) = driver
                .client
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1400,1000"],
            },
        }}});
        let res: Value = driver.call("POST", "/session", caps).await;
        driver.session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_owned();
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.client.post(url).json(&body),
            _ => self.client.get(url),
        };
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url})).await;
    }

    /// The elements matching `css` now.
    pub(crate) async fn elements(&self, css: &str) -> Vec<String> {
        let r = self
            .session(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        r["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits (up to 15 s) for an element matching `css`.
    pub(crate) async fn find(&self, css: &str) -> String {
        for _ in 0..300 {
            if let Some(id) = self.elements(css).await.into_iter().next() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no element `{css}` appeared");
    }

    pub(crate) async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.session("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Waits (up to 15 s) until no element matches `css`.
    pub(crate) async fn gone(&self, css: &str) {
        for _ in 0..300 {
            if self.elements(css).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("`{css}` is still there");
    }

    /// Replaces the text of the input `css` and commits it (Enter).
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.session("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.type_into(css, &format!("{text}\u{e007}")).await;
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        let r = self
            .session("GET", &format!("/element/{id}/text"), json!({}))
            .await;
        r["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (up to 15 s) until the text of `css` satisfies `ok` (the page may
    /// redraw it meanwhile); returns the last text read.
    async fn text_until(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..300 {
            last = self.text(css).await;
            if ok(&last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let r = self.session("GET", "/screenshot", json!({})).await;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            r["value"].as_str().unwrap(),
        )
        .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("test-output");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Chromium and chromedriver, or `None` (the test is then skipped, unless CI is set).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("chromium and chromedriver are needed for the browser test (CI is set)");
        }
        crate::skips::skipped("browser", "chromium / chromedriver not installed");
        return None;
    };
    Some((chromium, chromedriver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_sees_who_sent_each_message_and_no_buttons() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let app = admin_app().await;
    let (ok, bad) = one_good_one_bad(&app).await;
    app.admin_wait(&ok, "succeeded").await;
    app.admin_wait(&bad, "rejected").await;
    let failed = app
        .post_async("/acme/Lanes", None, json!({"lane": "ro", "n": 1}))
        .await;
    app.admin_wait(&failed, "dead").await;

    let driver = Driver::start(chromium, chromedriver).await;
    driver.goto(&app.url("/_admin")).await;
    driver.type_into("#token", READ_TOKEN).await;
    driver.click("#login").await;
    driver.find("body.read-only").await;
    assert!(driver.text("#role").await.contains("read-only"));
    driver
        .click("tr[data-trigger=\"acme/CreateCustomerRecord\"] a.open-log")
        .await;
    let head = driver.text("#messages thead").await.to_lowercase();
    assert!(head.contains("consumer"), "{head}");
    let line = driver
        .text(&format!("tr.msg[data-id=\"{ok}\"] td.consumer"))
        .await;
    assert_eq!(line, "erp");
    driver.click(&format!("tr.msg[data-id=\"{bad}\"]")).await;
    let detail = driver.text(&format!("tr.detail[data-id=\"{bad}\"]")).await;
    assert!(detail.contains("Sent by erp"), "{detail}");
    assert!(
        driver
            .elements(&format!("tr.detail[data-id=\"{bad}\"] button"))
            .await
            .is_empty(),
        "a read token is shown no Replay"
    );
    // The consumer filter: nobody else sent these, then erp's two again.
    driver.fill("#consumer-filter", "webshop").await;
    driver.gone(&format!("tr.msg[data-id=\"{ok}\"]")).await;
    driver.fill("#consumer-filter", "erp").await;
    driver.find(&format!("tr.msg[data-id=\"{ok}\"]")).await;
    driver.screenshot("admin-ui-read-only.png").await;
    // A blocked lane's message offers neither Skip nor Unblock.
    driver.goto(&app.url("/_admin#/log/acme/Lanes")).await;
    driver.click(&format!("tr.msg[data-id=\"{failed}\"]")).await;
    driver
        .find(&format!("tr.detail[data-id=\"{failed}\"] .attempts"))
        .await;
    assert!(
        driver
            .elements(&format!("tr.detail[data-id=\"{failed}\"] button"))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_expand_a_failed_message_and_replay_it() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let app = admin_app().await;
    let failed = app
        .post_async("/acme/Lanes", None, json!({"lane": "ui", "n": 1}))
        .await;
    app.admin_wait(&failed, "dead").await;
    let other = app
        .post_async(
            "/acme/Lanes",
            None,
            json!({"lane": "web", "n": 2, "ok": true}),
        )
        .await;
    app.admin_wait(&other, "succeeded").await;

    let driver = Driver::start(chromium, chromedriver).await;
    driver.goto(&app.url("/_admin")).await;
    driver.type_into("#token", GLOBAL_TOKEN).await;
    driver.click("#login").await;
    driver
        .click("tr[data-trigger=\"acme/Lanes\"] a.open-log")
        .await;
    assert!(driver.text("#lanes .lane-blocked").await.contains(&failed));
    // Each line says its lane and, for a failure, why.
    let head = driver.text("#messages thead").await.to_lowercase();
    assert!(head.contains("lane") && head.contains("error"), "{head}");
    let line = driver.text(&format!("tr.msg[data-id=\"{failed}\"]")).await;
    assert!(line.contains("ui") && line.contains("not ok"), "{line}");
    let line = driver.text(&format!("tr.msg[data-id=\"{other}\"]")).await;
    assert!(line.contains("web") && !line.contains("not ok"), "{line}");
    driver
        .click(&format!(
            "tr.msg[data-id=\"{failed}\"][data-status=\"dead\"]"
        ))
        .await;
    let attempt = driver
        .text(&format!(
            "tr.detail[data-id=\"{failed}\"] .attempts tr.attempt"
        ))
        .await;
    assert!(
        attempt.contains("failed") && attempt.contains("not ok"),
        "{attempt}"
    );

    app.set_lanes_flow(LANE_FLOW_FIXED).await;
    driver
        .click(&format!("tr.detail[data-id=\"{failed}\"] button.replay"))
        .await;
    // (Of the two succeeded lines, the replay is the one that says what it replays.)
    let row = driver
        .text("tr.msg[data-status=\"succeeded\"] .muted")
        .await;
    assert!(row.contains(&format!("replay of {failed}")), "{row}");
    let shot = driver.screenshot("admin-ui-replay.png").await;
    eprintln!("screenshot: {}", shot.display());

    // The lane filter shows one lane's messages only.
    driver.fill("#lane-filter", "web").await;
    driver.gone(&format!("tr.msg[data-id=\"{failed}\"]")).await;
    driver
        .gone("tr.msg[data-status=\"succeeded\"] .muted")
        .await;
    assert!(
        driver
            .text(&format!("tr.msg[data-id=\"{other}\"]"))
            .await
            .contains("web")
    );
    driver.fill("#lane-filter", "ui").await;
    driver.find(&format!("tr.msg[data-id=\"{failed}\"]")).await;
    driver.gone(&format!("tr.msg[data-id=\"{other}\"]")).await;
    driver.screenshot("admin-ui-lane-filter.png").await;

    // The other tenant's receiver refuses the connection: its delivery log says so.
    app.post_async("/other/Secret", None, json!({"n": 1})).await;
    // The message runs, its event is queued and the sender makes its attempt, all
    // behind the 202: the page is read once the attempt is recorded.
    let mut attempted = false;
    for _ in 0..250 {
        let (_, d) = app
            .admin("GET", "/deliveries?tenant=other", GLOBAL_TOKEN, None)
            .await;
        if d["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            attempted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(attempted, "the other tenant's delivery was attempted");
    driver.click("#nav-deliveries").await;
    driver
        .click("#delivery-tenant option[value=\"other\"]")
        .await;
    driver
        .click("#deliveries tr.msg[data-status=\"pending\"]")
        .await;
    let attempt = driver
        .text("#deliveries tr.detail .attempts tr.attempt")
        .await;
    assert!(attempt.contains("refused the connection"), "{attempt}");
    driver.screenshot("admin-ui-deliveries.png").await;

    // The keys page: a consumer's keys and what it used today.
    let price = app
        .get(
            "/acme/ItemPrice?itemId=A-100",
            Some(crate::helpers::WEBSHOP_KEY),
        )
        .await;
    assert_eq!(price.status(), 200);
    driver.click("#nav-keys").await;
    driver.click("#keys-tenant option[value=\"acme\"]").await;
    let row = driver
        .text("#keys tr[data-consumer=\"webshop\"] td.requests")
        .await;
    assert_eq!(row.trim(), "1", "{row}");
    let keys = driver.text("#keys tr[data-consumer=\"webshop\"]").await;
    assert!(
        keys.contains("(no id)") && !keys.contains("never"),
        "{keys}"
    );
    assert!(
        driver
            .text("#keys tr[data-consumer=\"erp\"]")
            .await
            .contains("never")
    );
    driver.screenshot("admin-ui-keys.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_a_subscription_switch_it_on_and_rotate_its_secret() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("chromium and chromedriver are needed for the browser test (CI is set)");
        }
        crate::skips::skipped("browser", "chromium / chromedriver not installed");
        return;
    };
    let (base, got) = crate::managed_subscriptions::receiver().await;
    let app = crate::admin::admin_app_with(
        |_| {},
        |s| {
            s.subscriptions_allow_http = true;
            s.subscriptions_poll = Duration::from_millis(20);
        },
    )
    .await;
    let driver = Driver::start(chromium, chromedriver).await;
    driver.goto(&app.url("/_admin")).await;
    driver.type_into("#token", GLOBAL_TOKEN).await;
    driver.click("#login").await;
    driver.click("#nav-subscriptions").await;
    driver
        .click("#subscription-tenant option[value=\"acme\"]")
        .await;
    driver.type_into("#sub-name", "ui-hook").await;
    driver.type_into("#sub-url", &format!("{base}/ui")).await;
    driver
        .type_into("#sub-events", "message.failed, order.*")
        .await;
    driver.click("#sub-save").await;
    let row = "tr.sub[data-name=\"ui-hook\"]";
    driver.find(&format!("{row}[data-enabled=\"false\"]")).await;
    let first = driver.text("#sub-secret code").await;
    assert!(first.starts_with("whsec_"), "{first}");
    assert!(got.lock().unwrap().is_empty(), "off: nothing sent");

    // Switched on: its ping arrives and shows in its delivery log.
    driver.click(&format!("{row} button.toggle")).await;
    driver.find(&format!("{row}[data-enabled=\"true\"]")).await;
    driver.click(&format!("{row} button.log")).await;
    let ping = "#sub-deliveries tr.msg[data-event=\"ping\"][data-status=\"succeeded\"]";
    let line = driver
        .text_until(ping, |l| l.contains("200") && l.contains("/ui"))
        .await;
    assert!(line.contains("200") && line.contains("/ui"), "{line}");
    {
        let got = got.lock().unwrap();
        let (path, headers, body) = &got[0];
        assert_eq!(path, "/ui");
        assert!(body.contains("\"ping\""), "{body}");
        assert!(crate::managed_subscriptions::verify(&first, headers, body));
    }
    driver.screenshot("admin-ui-subscriptions.png").await;

    // Rotated: a new secret, shown once, signs what is sent from now on.
    driver.click(&format!("{row} button.rotate")).await;
    let second = driver
        .text_until("#sub-secret code", |s| {
            s.starts_with("whsec_") && s != first
        })
        .await;
    assert!(second.starts_with("whsec_") && second != first, "{second}");
    driver.click(&format!("{row} button.test")).await;
    let said = driver
        .text_until("#sub-test-result", |s| !s.is_empty())
        .await;
    assert!(said.contains("delivered"), "{said}");
    let got = got.lock().unwrap();
    let (_, headers, body) = got.last().unwrap();
    assert!(crate::managed_subscriptions::verify(&second, headers, body));
    assert!(!crate::managed_subscriptions::verify(&first, headers, body));
}
