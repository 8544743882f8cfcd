//! PostgreSQL cut off under load: a TCP proxy between flowgate and the database
//! drops every connection and refuses new ones for a while. Callers get 503 with
//! `Retry-After` (not a hang) while it is away, every acknowledged message still
//! runs, and service comes back by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{ERP_KEY, TestApp};
use crate::pg::{query, schema};

/// Forwards a local port to PostgreSQL; `cut` drops every connection, `stall`
/// keeps them open but passes nothing on (a frozen server, a lost route).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Copies one direction of a link, holding what it read while `stalled`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                while stalled.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, st, l) = (up.clone(), stalled.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let (target, st) = (target.clone(), st.clone());
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        let (in_r, in_w) = inbound.into_split();
                        let (out_r, out_w) = outbound.into_split();
                        tokio::join!(pump(in_r, out_w, st.clone()), pump(out_r, in_w, st));
                    }
                }));
            }
        });
        Self {
            port,
            up,
            stalled,
            links,
        }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_off_under_load_503s_then_recovers_losing_nothing() {
    outage_under_load("pg_outage", false).await;
}

/// The connections stay open but nothing comes back: without a bound on the wait,
/// every caller would hang until the database answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_stops_answering_503s_at_once_then_recovers_losing_nothing() {
    outage_under_load("pg_stall", true).await;
}

/// Posts from eight callers while the database goes away for three seconds (cut
/// off, or `stalled`: connections open, nothing answered) and comes back. Callers
/// get 503 while it is away, service resumes by itself, and every acknowledged
/// message runs.
async fn outage_under_load(test: &str, stalled: bool) {
    let Some(pg) = schema(test).await else {
        return;
    };
    let base = std::env::var("FLOWGATE_TEST_DATABASE_URL").unwrap();
    let host = base
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let proxy = Proxy::start(host.clone()).await;
    let via_proxy = pg.url.replace(&host, &format!("127.0.0.1:{}", proxy.port));
    let app = TestApp::spawn_with(
        |_| {},
        |s| {
            s.store = via_proxy.clone();
            s.store_timeout = Duration::from_millis(500);
            s.lease = Duration::from_secs(2);
        },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let posters: Vec<_> = (0..8)
        .map(|p| {
            let (stop, acked, refused, client) =
                (stop.clone(), acked.clone(), refused.clone(), client.clone());
            let url = app.url("/acme/CreateCustomerRecord");
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let res = client
                        .post(&url)
                        .header("x-api-key", ERP_KEY)
                        .json(&json!({"name": format!("c{p}-{n}")}))
                        .send()
                        .await
                        .expect("every request is answered");
                    match res.status().as_u16() {
                        202 => {
                            let doc: serde_json::Value = res.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(doc["message_id"].as_str().unwrap().to_owned());
                        }
                        503 => {
                            assert!(res.headers().contains_key("retry-after"));
                            refused.lock().unwrap().push(());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acked.lock().unwrap().len();
    let refused_before = refused.lock().unwrap().len();
    if stalled {
        proxy.stall(true);
    } else {
        proxy.cut();
    }
    // Right away, while the pool still has idle connections: not ready, and
    // saying so rather than waiting for the database.
    let ready = client.get(app.url("/_ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "{}", ready.text().await.unwrap());
    // A status URL is looked up in the store: 503 as well, not a wait.
    let first = acked.lock().unwrap()[0].clone();
    let status = client
        .get(app.url(&format!("/acme/CreateCustomerRecord/messages/{first}")))
        .header("x-api-key", ERP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 503);
    assert!(status.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused_while_away = refused.lock().unwrap().len() - refused_before;
    if stalled {
        proxy.stall(false);
    } else {
        proxy.restore();
    }
    let during = acked.lock().unwrap().len();
    // Back by itself: new messages are accepted again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < during + 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "service did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for p in posters {
        p.await.unwrap();
    }
    assert!(before > 0, "accepted before the cut");
    assert!(refused_while_away > 0, "503 while the database was away");

    // Every acknowledged message is stored and runs to success.
    let ids = acked.lock().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = query(
            &pg.url,
            "SELECT id::text FROM messages WHERE status = 'succeeded'",
        )
        .await;
        let done: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let missing = ids.iter().filter(|id| !done.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged messages did not run",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "acknowledged {} ({before} before the cut, {} while away), 503s {refused_while_away}",
        ids.len(),
        during - before
    );
}
