//! Hot reload: edits, additions and deletions under `flows/` take effect without a
//! restart; a broken file keeps its last good version.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, write_flow};
use crate::stub::{Reply, Stub};

fn echo(word: &str) -> String {
    format!(
        "methods: [GET]\nauth: {{ none: true }}\nsteps:\n  - respond: {{ body: '\"{word}\"' }}\n"
    )
}

/// Polls `path` until its JSON body is `want` or a second and a half passes.
async fn eventually(app: &TestApp, path: &str, want: Option<&str>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        let res = app.get(path, None).await;
        let got = if res.status() == StatusCode::OK {
            res.json::<Value>()
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        } else {
            None
        };
        if got.as_deref() == want {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_additions_and_deletions_apply_within_a_second() {
    let app = TestApp::spawn_with(|f| write_flow(f, "t/Echo.yaml", &echo("one")), |_| {}).await;
    assert!(eventually(&app, "/t/Echo", Some("one")).await);

    write_flow(&app.flows_dir(), "t/Echo.yaml", &echo("two"));
    assert!(
        eventually(&app, "/t/Echo", Some("two")).await,
        "edit applied"
    );

    write_flow(&app.flows_dir(), "t/Added.yaml", &echo("new"));
    assert!(
        eventually(&app, "/t/Added", Some("new")).await,
        "new file served"
    );

    std::fs::remove_file(app.flows_dir().join("t/Added.yaml")).unwrap();
    assert!(
        eventually(&app, "/t/Added", None).await,
        "deleted file gone"
    );
    assert_eq!(
        app.get("/t/Added", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_keeps_the_last_good_version() {
    let app = TestApp::spawn_with(|f| write_flow(f, "t/Echo.yaml", &echo("good")), |_| {}).await;
    write_flow(
        &app.flows_dir(),
        "t/Echo.yaml",
        "methods: [GET]\nauth: { none: true }\nsteps:\n  - respond: { body: '.a | | .b' }\n",
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while app.metric("flowgate_flow_load_errors").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken file was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let res = app.get("/t/Echo", None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), "good");
    // Fixing it clears the error and serves the new version.
    write_flow(&app.flows_dir(), "t/Echo.yaml", &echo("fixed"));
    assert!(eventually(&app, "/t/Echo", Some("fixed")).await);
    // The count of problems follows the swap of the flows within the same reload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while app.metric("flowgate_flow_load_errors").await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fixed file still counts as a problem"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_survive_a_reload() {
    // A slow server holds the request in its `http` step while the flow changes.
    let stub = Stub::start(Reply::json(200, json!({})).delay(Duration::from_millis(500))).await;
    let tenant = format!(
        "connections:\n  slow:\n    http:\n      base_url: \"{}\"\n      timeout: 5s\n",
        stub.url()
    );
    let app = TestApp::spawn_with(
        |f| {
            write_flow(f, "t/_tenant.yaml", &tenant);
            write_flow(
                f,
                "t/Slow.yaml",
                "methods: [GET]\nauth: { none: true }\nsteps:\n  - http: { method: GET, connection: slow, url: wait, into: r }\n  - respond: { body: '\"v1\"' }\n",
            )
        },
        |_| {},
    )
    .await;
    let (client, url) = (app.client.clone(), app.url("/t/Slow"));
    let in_flight = tokio::spawn(async move { client.get(url).send().await.unwrap() });
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || async {
            !stub.recorded().is_empty()
        })
        .await,
        "the request never reached its http step"
    );
    write_flow(&app.flows_dir(), "t/Slow.yaml", &echo("v2"));
    let res = in_flight.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), "v1");
    assert!(eventually(&app, "/t/Slow", Some("v2")).await);
}
