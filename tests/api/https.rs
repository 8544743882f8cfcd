//! HTTPS built in: a certificate the test makes, HTTP/2 by ALPN, the certificate
//! renewed while serving, and a bad pair refused at start with the file named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flowgate::startup::Application;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

use crate::helpers::{WEBSHOP_KEY, copy_dir, eventually, repo_flows, settings_in};

/// A CA of its own and the certificate it signed for `localhost` and 127.0.0.1.
struct Issued {
    /// The CA's certificate, for a client to trust.
    ca: String,
    /// The served chain: the leaf, then the CA.
    chain: String,
    key: String,
}

fn issue(ca_name: &str) -> Issued {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    Issued {
        ca: ca.pem(),
        chain: leaf.pem() + &ca.pem(),
        key: key.serialize_pem(),
    }
}

/// The certificate and key files of a server in `dir`, written as a renewal
/// writes them: the certificate first, then the key.
fn install(dir: &Path, issued: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &issued.chain).unwrap();
    std::fs::write(&key, &issued.key).unwrap();
    (cert, key)
}

/// A new client (so a new connection) trusting only `ca`, reaching `localhost`
/// at `addr`.
fn trusting(ca: &str, addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10))
}

async fn health(
    client: reqwest::ClientBuilder,
    addr: SocketAddr,
) -> reqwest::Result<reqwest::Response> {
    let url = format!("https://localhost:{}/_health", addr.port());
    client.build().unwrap().get(url).send().await
}

#[tokio::test]
async fn serves_https_with_http2_and_takes_a_renewed_certificate_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let first = issue("flowgate test CA one");
    let (cert, key) = install(dir.path(), &first);
    let mut settings = settings_in(dir.path());
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    settings.tls_reload_interval = Duration::from_millis(50);
    let app = Application::build(settings).await.expect("server starts");
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped());

    let res = health(trusting(&first.ca, addr), addr).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    // A trigger over HTTP/2: its query, and a body read and checked, as over HTTP/1.1.
    let client = trusting(&first.ca, addr).build().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let res = client
        .get(format!("{base}/acme/ItemPrice?itemId=A-100&qty=2"))
        .header("x-api-key", WEBSHOP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_2)
    );
    assert_eq!(res.json::<Value>().await.unwrap()["total"], 25.0);
    let res = client
        .post(format!("{base}/acme/StockReservation"))
        .header("x-api-key", WEBSHOP_KEY)
        .json(&json!({ "qty": 1.5, "customer": "c-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let refused: Value = res.json().await.unwrap();
    assert_eq!(refused["errors"][0]["code"], "invalid_body", "{refused}");

    let res = health(trusting(&first.ca, addr).http1_only(), addr)
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let plain = reqwest::get(format!("http://{addr}/_health")).await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain HTTP is not served on the HTTPS port"
    );

    // A renewal by another CA: new connections get it, without a restart.
    let second = issue("flowgate test CA two");
    install(dir.path(), &second);
    let renewed = eventually(Duration::from_secs(20), || async {
        health(trusting(&second.ca, addr), addr)
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(renewed, "a client trusting only the second CA never got in");
    let e = health(trusting(&first.ca, addr), addr)
        .await
        .expect_err("a new connection is served the renewed certificate");
    assert!(e.is_connect(), "{e:?}");
}

/// What `flowgate serve` said when it refused to start with these arguments.
async fn refused(dir: &Path, args: &[&Path]) -> String {
    let flows = dir.join("flows");
    copy_dir(&repo_flows(), &flows);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--flows"])
        .arg(&flows)
        .arg("--store")
        .arg(format!("sqlite://{}", dir.join("x.db").display()))
        .args(args)
        .current_dir(dir)
        .env("FLOWGATE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stopped = eventually(Duration::from_secs(20), || {
        let done = serve.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    if !stopped {
        let _ = serve.kill();
        panic!("serve started with {args:?}");
    }
    let out = serve.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_key_or_a_missing_half_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = install(dir.path(), &issue("flowgate test CA"));
    let other = issue("flowgate test CA");
    std::fs::write(&key, &other.key).unwrap();
    let (tls_cert, tls_key) = (Path::new("--tls-cert"), Path::new("--tls-key"));

    let err = refused(dir.path(), &[tls_cert, &cert, tls_key, &key]).await;
    let said = format!(
        "tls_key {} does not match the certificate of tls_cert {}",
        key.display(),
        cert.display()
    );
    assert!(err.contains(&said), "{err}");

    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n%%%\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = refused(dir.path(), &[tls_cert, &cert, tls_key, &key]).await;
    let said = format!("tls_key {}: cannot read the private key", key.display());
    assert!(err.contains(&said), "{err}");

    let err = refused(dir.path(), &[tls_cert, &cert]).await;
    assert!(err.contains("tls_cert is set but tls_key is not"), "{err}");
}

/// An event receiver whose certificate is not trusted and one whose port is
/// closed fail differently: `tls` and `connect`, each saying what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_receiver_certificate_reads_as_tls_and_a_closed_port_as_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = install(dir.path(), &issue("a CA nobody trusts"));
    let mut settings = settings_in(dir.path());
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    let receiver = Application::build(settings).await.expect("server starts");
    let port = receiver.local_addr().port();
    tokio::spawn(receiver.run_until_stopped());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let app = crate::admin::admin_app().await;
    let mut said = Vec::new();
    for (name, port) in [("untrusted", port), ("closed", closed)] {
        let body = json!({"tenant": "acme", "name": name, "url": format!("https://127.0.0.1:{port}/hook"), "events": ["message.failed"]});
        let token = crate::admin::GLOBAL_TOKEN;
        let (code, made) = app.admin("POST", "/subscriptions", token, Some(body)).await;
        assert_eq!(code, 201, "{made}");
        let test = format!(
            "/subscriptions/{}/test",
            made["subscription_id"].as_str().unwrap()
        );
        let (_, tested) = app.admin("POST", &test, token, None).await;
        said.push(tested);
    }
    assert_eq!(said[0]["error_kind"], "tls", "{}", said[0]);
    let tls = said[0]["error"].as_str().unwrap();
    assert!(
        tls.contains("TLS handshake") && tls.contains("certificate"),
        "{tls}"
    );
    assert_eq!(said[1]["error_kind"], "connect", "{}", said[1]);
    let refused = said[1]["error"].as_str().unwrap();
    assert!(refused.contains("refused the connection"), "{refused}");
    assert!(!refused.contains("certificate"), "{refused}");
}
