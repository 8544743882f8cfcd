//! PostgreSQL cut off under load: a TCP proxy between flowgate and the database
//! drops every connection and refuses new ones for a while. Callers get 503 with
//! `Retry-After` (not a hang) while it is away, every acknowledged message still
//! runs, and service comes back by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{ERP_KEY, TestApp};
use crate::pg::{query, schema};

/// Forwards a local port to PostgreSQL; `cut` drops every connection.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, l) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { port, up, links }
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
    let Some(pg) = schema("pg_outage").await else {
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
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused_while_away = refused.lock().unwrap().len();
    proxy.restore();
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
