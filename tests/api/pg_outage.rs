//! PostgreSQL cut off under load: a TCP proxy between flowgate and the database
//! drops every connection and refuses new ones for a while. Callers get 503 with
//! `Retry-After` (not a hang) while it is away, every acknowledged message still
//! runs, and service comes back by itself. Also a node whose route to the database
//! is lost (packets vanish, nothing is refused), in a network namespace of its own.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::crash::spawn_server_in;
use crate::helpers::{ERP_KEY, TestApp, write_flow};
use crate::pg::{ci, query, schema};
use crate::pg_server::{Cluster, Login, checked, cluster};

/// Forwards a local port to PostgreSQL; `cut` drops every connection, `stall`
/// keeps them open but passes nothing on (a frozen server, a lost route).
pub struct Proxy {
    pub port: u16,
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
    /// Listens on `bind` (an address with port 0) and forwards to `target`
    /// (`host:port`).
    pub async fn start(target: String, bind: &str) -> Self {
        let listener = TcpListener::bind(bind).await.unwrap();
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

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `host:port` of the test database, for a proxy to forward to.
pub fn database_host() -> String {
    let base = crate::pg::database_url().expect("a test database");
    base.split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_off_under_load_503s_then_recovers_losing_nothing() {
    outage_under_load("pg_outage", How::Cut).await;
}

/// The connections stay open but nothing comes back: without a bound on the wait,
/// every caller would hang until the database answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_stops_answering_503s_at_once_then_recovers_losing_nothing() {
    outage_under_load("pg_stall", How::Stall).await;
}

/// A real restart, on a server of the test's own (stopping the shared one would
/// take the database from every test running beside): sessions are ended by the
/// server (`57P01`), the port refuses for a while, then a fresh server answers
/// with none of the node's sessions, prepared statements or `LISTEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarted_under_load_503s_then_recovers_losing_nothing() {
    outage_under_load("pg_restart", How::Restart).await;
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    Cut,
    Stall,
    Restart,
}

/// What takes the database away and brings it back.
enum Outage {
    Cut(Proxy),
    Stall(Proxy),
    Restart(Cluster),
}

impl Outage {
    fn away(&self) {
        match self {
            Self::Cut(proxy) => proxy.cut(),
            Self::Stall(proxy) => proxy.stall(true),
            Self::Restart(cluster) => cluster.stop().unwrap(),
        }
    }

    fn back(&self) {
        match self {
            Self::Cut(proxy) => proxy.restore(),
            Self::Stall(proxy) => proxy.stall(false),
            Self::Restart(cluster) => cluster.start_again().unwrap(),
        }
    }
}

/// Posts from eight callers while the database goes away for a few seconds (cut
/// off; stalled: connections open, nothing answered; or restarted) and comes back.
/// Callers get 503 while it is away, service resumes by itself, and every
/// acknowledged message runs.
async fn outage_under_load(test: &str, how: How) {
    // The store's URL, the URL the test checks the messages through, and the
    // schema to drop afterwards (on the shared server).
    let (outage, store, database, _schema) = if how == How::Restart {
        let Some(cluster) = cluster(Login::Trust, test) else {
            return;
        };
        let url = cluster.url("", "sslmode=prefer");
        (Outage::Restart(cluster), url.clone(), url, None)
    } else {
        let Some(pg) = schema(test).await else {
            return;
        };
        let host = database_host();
        let proxy = Proxy::start(host.clone(), "127.0.0.1:0").await;
        let store = pg.url.replace(&host, &format!("127.0.0.1:{}", proxy.port));
        let url = pg.url.clone();
        let outage = if how == How::Stall {
            Outage::Stall(proxy)
        } else {
            Outage::Cut(proxy)
        };
        (outage, store, url, Some(pg))
    };
    let app = TestApp::spawn_with(
        |_| {},
        |s| {
            s.store = store.clone();
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

    // Traffic flows before the cut.
    assert!(
        crate::helpers::eventually(Duration::from_secs(30), || async {
            !acked.lock().unwrap().is_empty()
        })
        .await,
        "nothing accepted before the cut"
    );
    let before = acked.lock().unwrap().len();
    let refused_before = refused.lock().unwrap().len();
    // `pg_ctl` waits for the server: off the runtime's workers.
    tokio::task::block_in_place(|| outage.away());
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
    tokio::task::block_in_place(|| outage.back());
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
            &database,
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
        "acknowledged {} ({before} before the outage, {} from its start to its end), 503s {refused_while_away}",
        ids.len(),
        during - before
    );
}

/// A network namespace for one node, joined to the test's by two veth pairs:
/// callers reach the node at `10.231.N.2` over one, the node reaches the database
/// proxy at `10.232.N.1` over the other. Taking the test's end of the second link
/// down loses the node's route to the database the way a dead host or a broken
/// link does: its packets leave and vanish, with no error for it to see.
struct Netns {
    name: String,
    http_link: String,
    db_link: String,
    n: u32,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let what = format!("ip {}", args.join(" "));
    checked(&what, Command::new("ip").args(args).output())
}

impl Netns {
    fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let ns = Self {
            name: format!("fgnet{pid}"),
            http_link: format!("fg{pid}h"),
            db_link: format!("fg{pid}d"),
            n: 20 + pid % 200,
        };
        ip(&["netns", "add", &ns.name])?;
        for (link, net) in [(&ns.http_link, 231), (&ns.db_link, 232)] {
            let peer = format!("{link}n");
            ip(&["link", "add", link, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &ns.name])?;
            ip(&[
                "addr",
                "add",
                &format!("10.{net}.{}.1/24", ns.n),
                "dev",
                link,
            ])?;
            ip(&["link", "set", link, "up"])?;
            let addr = format!("10.{net}.{}.2/24", ns.n);
            ip(&["-n", &ns.name, "addr", "add", &addr, "dev", &peer])?;
            ip(&["-n", &ns.name, "link", "set", &peer, "up"])?;
        }
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Where callers reach the node.
    fn node(&self) -> String {
        format!("10.231.{}.2", self.n)
    }

    /// Where the node reaches the database proxy.
    fn database(&self) -> String {
        format!("10.232.{}.1", self.n)
    }

    /// The node's connections to the database, by local address, with how many
    /// bytes each holds that it sent and the database has not acknowledged.
    fn connections(&self) -> Vec<(String, u64)> {
        let db = self.database();
        let args = [
            "netns",
            "exec",
            &self.name,
            "ss",
            "-tnH",
            "state",
            "established",
            "dst",
            &db,
        ];
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ss: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                // Recv-Q, Send-Q, local, peer
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(2)?.to_string(), f.get(1)?.parse().ok()?))
            })
            .collect()
    }

    fn route_to_database(&self, lost: bool) {
        let state = if lost { "down" } else { "up" };
        ip(&["link", "set", &self.db_link, state]).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.http_link]);
        let _ = ip(&["link", "del", &self.db_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// How long the route stays lost. The connections stuck at `STUCK_AT` must be
/// closed by `GIVEN_UP_BY`: their TCP user timeout is 10 s with a 1 s store
/// timeout.
const LOST_FOR: Duration = Duration::from_secs(19);
const STUCK_AT: Duration = Duration::from_secs(3);
const GIVEN_UP_BY: Duration = Duration::from_secs(17);

/// The route to the database is lost with statements in flight. Left to TCP, the
/// node's connections would keep retransmitting them (for a quarter of an hour
/// with the usual settings), holding the statements and the accept path behind
/// them; a database that came back elsewhere would not be used until then. The
/// node answers 503 within its store timeout while the route is gone, closes the
/// dead connections after their TCP user timeout, and accepts again within
/// seconds of the route's return; everything it acknowledged runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_its_route_to_the_database_drops_dead_connections_and_recovers() {
    let Some(pg) = schema("pg_lost_route").await else {
        return;
    };
    let net = match Netns::create() {
        Ok(net) => net,
        Err(e) => {
            assert!(!ci(), "CI=true but no network namespace could be made: {e}");
            crate::skips::skipped("network namespace", e.to_string());
            return;
        }
    };
    let host = database_host();
    let proxy = Proxy::start(host.clone(), &format!("{}:0", net.database())).await;
    let store = pg
        .url
        .replace(&host, &format!("{}:{}", net.database(), proxy.port));
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        &dir.path().join("flows"),
        "t/Accept.yaml",
        "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.i }\n",
    );
    let env = [
        ("FLOWGATE_STORE_TIMEOUT", "1s"),
        ("FLOWGATE_LEASE", "2s"),
        ("FLOWGATE_POOL_SIZE", "4"),
        ("FLOWGATE_WORKERS", "1"),
    ];
    let listen = format!("{}:8080", net.node());
    let node = spawn_server_in(
        Some(&net.name),
        &listen,
        dir.path(),
        "node.log",
        &store,
        &env,
    )
    .await;
    let log = || std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = format!("{}/t/Accept", node.base);
    let post = |i: usize| client.post(&url).json(&json!({ "i": i })).send();
    let post_by = |i: usize, deadline: Duration| {
        client
            .post(&url)
            .timeout(deadline)
            .json(&json!({ "i": i }))
            .send()
    };

    let mut acked = Vec::new();
    for i in 0..20 {
        let res = post(i).await.unwrap();
        assert_eq!(res.status(), 202, "{}", log());
        let doc: serde_json::Value = res.json().await.unwrap();
        acked.push(doc["message_id"].as_str().unwrap().to_owned());
    }

    net.route_to_database(true);
    let lost = Instant::now();
    let mut i = 100;
    let mut refused = 0;
    let mut stuck = Vec::new();
    let mut checked = false;
    while lost.elapsed() < LOST_FOR {
        if stuck.is_empty() && lost.elapsed() > STUCK_AT {
            stuck = net.connections();
            stuck.retain(|(_, unacknowledged)| *unacknowledged > 0);
            assert!(!stuck.is_empty(), "statements are waiting for the database");
        }
        if !checked && lost.elapsed() > GIVEN_UP_BY {
            let open = net.connections();
            let still: Vec<_> = open
                .iter()
                .filter(|(a, _)| stuck.iter().any(|(s, _)| s == a))
                .collect();
            assert!(
                still.is_empty(),
                "{:?} after the route was lost, connections stuck since {STUCK_AT:?} are still open: {still:?}",
                lost.elapsed(),
            );
            checked = true;
        }
        // 503 within the store timeout, not a wait: a request that waits for the
        // database fails on its own deadline.
        let res = post_by(i, Duration::from_secs(3))
            .await
            .expect("503 within the store timeout, not a wait");
        i += 1;
        assert_eq!(res.status(), 503, "nothing can be stored without a route");
        assert!(res.headers().contains_key("retry-after"));
        refused += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(checked && refused > 10);

    net.route_to_database(false);
    let back = Instant::now();
    loop {
        let res = post(i).await.unwrap();
        i += 1;
        if res.status() == 202 {
            let doc: serde_json::Value = res.json().await.unwrap();
            acked.push(doc["message_id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(8),
            "still {} {:?} after the route came back; log:\n{}",
            res.status(),
            back.elapsed(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything acknowledged runs, the messages from before the loss included.
    let ids = acked
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = query(
            &pg.url,
            &format!("SELECT count(*) FROM messages WHERE id IN ({ids}) AND status = 'succeeded'"),
        )
        .await;
        let done: i64 = rows[0].get(0);
        if done == acked.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} acknowledged messages ran; log:\n{}",
            acked.len(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(node);
}
