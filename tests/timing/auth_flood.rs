//! Floods of wrong credentials against valid callers. The flooders connect from
//! 127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to loopback), valid callers
//! from 127.0.0.1: addresses of their own, as they would be on a network.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{TestApp, WEBSHOP_KEY, write_flow};

const GLOBAL_TOKEN: &str = "fg_admin_flood_test";

fn admin_tokens() -> Vec<flowgate::config::AdminToken> {
    vec![flowgate::config::AdminToken {
        label: "ops".into(),
        hash: flowgate::auth::keys::hash(GLOBAL_TOKEN).unwrap(),
        tenants: None,
        role: flowgate::config::AdminRole::Operate,
    }]
}

const WARM: &str = "fg_flood_warm_key";
const FRESH: &str = "fg_flood_fresh_key";

async fn flood_app(budget: u32) -> TestApp {
    let tenant = format!(
        "api_keys:\n  warm: \"{}\"\n  fresh: \"{}\"\n",
        flowgate::auth::keys::hash(WARM).unwrap(),
        flowgate::auth::keys::hash(FRESH).unwrap()
    );
    TestApp::spawn_with(
        move |f| {
            write_flow(f, "flood/_tenant.yaml", &tenant);
            write_flow(
                f,
                "flood/Ping.yaml",
                "methods: [GET]\nauth: { api_keys: [warm, fresh] }\nsteps:\n  - respond: { body: '\"pong\"' }\n",
            );
        },
        move |s| {
            s.auth_failure_budget = budget;
            s.admin_tokens = admin_tokens();
        },
    )
    .await
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse::<IpAddr>().unwrap()))
        .build()
        .unwrap()
}

struct Flood {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Answers seen, by status: 401, 429, 503.
    seen: Arc<[AtomicU64; 3]>,
}

/// `connections` loops from `ip`, each sending random wrong credentials to `path`
/// (as an API key, or as an admin token) as fast as answers come.
fn flood(app: &TestApp, ip: &str, connections: usize, path: &str) -> Flood {
    let seen: Arc<[AtomicU64; 3]> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = client_from(ip);
    let admin = path.starts_with("/_admin");
    let tasks = (0..connections)
        .map(|i| {
            let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
            let url = app.url(path);
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let wrong = format!("fg_wrong_{i}_{n}_{}", rand::random::<u64>());
                    let req = client.get(&url);
                    let req = if admin {
                        req.bearer_auth(wrong)
                    } else {
                        req.header("x-api-key", wrong)
                    };
                    let Ok(res) = req.send().await else {
                        continue;
                    };
                    let slot = match res.status().as_u16() {
                        401 => 0,
                        429 => {
                            assert!(res.headers().contains_key("retry-after"));
                            1
                        }
                        503 => 2,
                        other => panic!("a wrong key was answered {other}"),
                    };
                    seen[slot].fetch_add(1, Ordering::Relaxed);
                    let _ = res.bytes().await;
                }
            })
        })
        .collect();
    Flood { stop, tasks, seen }
}

impl Flood {
    async fn end(self) -> [u64; 3] {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        [0, 1, 2].map(|i| self.seen[i].load(Ordering::Relaxed))
    }
}

/// How long a valid caller at 127.0.0.1 waits for `FRESH`'s first verification,
/// and the 99th percentile of 200 calls with the cached `WARM`. Measured from a
/// thread and runtime of its own, so that the flood's tasks in this process do
/// not stand between the measuring task and its answers.
async fn valid_callers(app: &TestApp) -> (Duration, Duration) {
    let base = app.base.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(measure(&base))
    })
    .await
    .unwrap()
}

async fn measure(base: &str) -> (Duration, Duration) {
    let url = format!("{base}/flood/Ping");
    let me = client_from("127.0.0.1");
    // The connection is opened before the clock starts.
    assert_eq!(
        me.get(format!("{base}/_health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let started = Instant::now();
    let res = me
        .get(&url)
        .header("x-api-key", FRESH)
        .send()
        .await
        .unwrap();
    let fresh = started.elapsed();
    assert_eq!(res.status(), StatusCode::OK);
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let res = me.get(&url).header("x-api-key", WARM).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let _ = res.bytes().await;
        times.push(started.elapsed());
    }
    times.sort();
    (fresh, times[times.len() * 99 / 100 - 1])
}

async fn warm_up(app: &TestApp) {
    let res = app.get("/flood/Ping", Some(WARM)).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_keys_spends_its_budget_and_does_not_delay_valid_callers() {
    let _alone = crate::ALONE.lock().await;
    let app = flood_app(20).await;
    warm_up(&app).await;
    let before = app.metric("flowgate_key_verifications_total").await;
    let floods = [
        flood(&app, "127.0.0.2", 96, "/flood/Ping"),
        flood(&app, "127.0.0.3", 32, "/flood/Ping"),
    ];
    let started = Instant::now();
    // Until both addresses have spent their budgets.
    while floods
        .iter()
        .any(|f| f.seen[1].load(Ordering::Relaxed) == 0)
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no 429 yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (fresh, p99) = valid_callers(&app).await;
    let [a, b] = floods;
    let (a, b) = (a.end().await, b.end().await);
    let verified = app.metric("flowgate_key_verifications_total").await - before;
    println!(
        "budget 20: fresh key {fresh:?}, cached p99 {p99:?}; 401/429/503 answers to 127.0.0.2 {a:?}, to 127.0.0.3 {b:?}; argon2 verifications {verified}"
    );
    assert!(
        fresh < Duration::from_millis(250),
        "fresh key took {fresh:?}"
    );
    assert!(p99 < Duration::from_millis(10), "cached keys' p99 {p99:?}");
    // 20 failures a minute per address, and what refilled while the flood went
    // on (one every 3 s): the rest of it cost no argon2 work.
    let refilled = (started.elapsed().as_secs_f64() / 3.0).ceil();
    for seen in [a, b] {
        assert!(seen[0] as f64 <= 20.0 + refilled, "{seen:?}");
        assert!(seen[1] > 0, "no 429: {seen:?}");
    }
    // Each wrong key is tried against the tenant's two hashes; the fresh key
    // matches the second.
    assert_eq!(verified as u64, 2 * (a[0] + b[0]) + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_take_turns_so_an_unthrottled_flood_still_lets_a_new_key_in() {
    let _alone = crate::ALONE.lock().await;
    // No budget to speak of: only the turns per address keep the valid caller's
    // wait to about one verification.
    let app = flood_app(1_000_000).await;
    warm_up(&app).await;
    let floods = [
        flood(&app, "127.0.0.2", 96, "/flood/Ping"),
        flood(&app, "127.0.0.3", 32, "/flood/Ping"),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fresh, p99) = valid_callers(&app).await;
    let [a, b] = floods;
    let (a, b) = (a.end().await, b.end().await);
    let counts = [0, 1, 2].map(|i| a[i] + b[i]);
    println!(
        "no budget: fresh key {fresh:?}, cached p99 {p99:?}, flood answers 401/429/503 {counts:?}"
    );
    assert!(
        fresh < Duration::from_millis(250),
        "fresh key took {fresh:?}"
    );
    assert!(counts[2] > 0, "the queue never filled: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_have_the_same_budget_and_turns() {
    let _alone = crate::ALONE.lock().await;
    let app = flood_app(20).await;
    let f = flood(&app, "127.0.0.2", 64, "/_admin/api/tenants");
    let started = Instant::now();
    while f.seen[1].load(Ordering::Relaxed) == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "no 429 yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let res = client_from("127.0.0.1")
        .get(app.url("/_admin/api/tenants"))
        .bearer_auth(GLOBAL_TOKEN)
        .send()
        .await
        .unwrap();
    let fresh = started.elapsed();
    assert_eq!(res.status(), StatusCode::OK);
    let counts = f.end().await;
    println!("admin: fresh token {fresh:?}, flood answers 401/429/503 {counts:?}");
    assert!(fresh < Duration::from_millis(250), "{fresh:?}");
    assert!(counts[1] > 0, "{counts:?}");
    assert!(counts[0] <= 23, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_costs_the_same_for_unknown_users_and_wrong_passwords() {
    let _alone = crate::ALONE.lock().await;
    let tenant = format!(
        "basic_users:\n  partner: \"{}\"\n  other: \"{}\"\n",
        flowgate::auth::keys::hash("p4ssw0rd").unwrap(),
        flowgate::auth::keys::hash("0ther").unwrap()
    );
    let app = TestApp::spawn_with(
        move |f| {
            write_flow(f, "b/_tenant.yaml", &tenant);
            write_flow(
                f,
                "b/Basic.yaml",
                "auth: { basic: [partner] }\nsteps:\n  - respond: { body: '\"ok\"' }\n",
            );
        },
        |_| {},
    )
    .await;
    let attempt = |user: &str, password: String| {
        let req = app
            .client
            .post(app.url("/b/Basic"))
            .basic_auth(user, Some(password));
        async move {
            let started = Instant::now();
            let res = req.send().await.unwrap();
            (res.status(), started.elapsed())
        }
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let before = app.metric("flowgate_key_verifications_total").await;
        let (status, t) = attempt("ghost", format!("guess-{i}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        unknown.push(t);
        let (status, t) = attempt("partner", format!("guess-{i}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        wrong.push(t);
        // A user of the tenant whom this trigger does not list, with their own
        // password: refused, after the same work.
        let (status, _) = attempt("other", "0ther".into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let after = app.metric("flowgate_key_verifications_total").await;
        // One argon2 verification each (the third is cached after the first round).
        let expected = if i == 0 { 3.0 } else { 2.0 };
        assert_eq!(after - before, expected, "round {i}");
    }
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[2], wrong[2]);
    println!("basic: unknown user median {u:?}, wrong password median {w:?}");
    assert!(
        u * 2 >= w && w * 2 >= u,
        "unknown {u:?} against wrong {w:?}"
    );
    let ok = app
        .client
        .post(app.url("/b/Basic"))
        .basic_auth("partner", Some("p4ssw0rd"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_budgets_count_forwarded_addresses_and_only_then() {
    let _alone = crate::ALONE.lock().await;
    for trusted in [true, false] {
        let app = TestApp::spawn_with(
            |_| {},
            |s| {
                s.auth_failure_budget = 2;
                if trusted {
                    s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
                }
            },
        )
        .await;
        let wrong = |from: &str, n: u32| {
            app.client
                .get(app.url("/acme/ItemPrice?itemId=A-100"))
                .header("x-api-key", format!("fg_wrong_{n}"))
                .header("x-forwarded-for", from)
                .send()
        };
        for n in 0..2 {
            assert_eq!(wrong("10.0.0.1", n).await.unwrap().status(), 401);
        }
        let res = wrong("10.0.0.1", 2).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "too_many_failures");
        // Another forwarded address: its own budget behind a trusted proxy; the
        // same peer's (spent) budget when the header is not trusted.
        let other = wrong("10.0.0.2", 3).await.unwrap().status();
        let expected = if trusted {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(other, expected, "trusted proxies: {trusted}");
        // A valid key not yet verified is not verified for a spent budget; once
        // verified (for another address), it is answered whatever the budget.
        let valid_from = |from: Option<&str>| {
            let mut r = app
                .client
                .get(app.url("/acme/ItemPrice?itemId=A-100"))
                .header("x-api-key", WEBSHOP_KEY);
            if let Some(f) = from {
                r = r.header("x-forwarded-for", f);
            }
            r.send()
        };
        assert_eq!(
            valid_from(Some("10.0.0.1")).await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        if trusted {
            assert_eq!(valid_from(None).await.unwrap().status(), StatusCode::OK);
            assert_eq!(
                valid_from(Some("10.0.0.1")).await.unwrap().status(),
                StatusCode::OK
            );
        }
    }
}
