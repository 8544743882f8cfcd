//! TLS to PostgreSQL, against the real server (FLOWGATE_TEST_DATABASE_URL, which
//! must offer TLS, as Debian's PostgreSQL does with its own certificate): the
//! store's connections and `sql` steps are encrypted by default, `sslmode` has
//! libpq's meanings, and a certificate that does not check out stops the
//! connection with an error that says why.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use flowgate::store::{PgOptions, Store, StoreError};

use crate::pg::{PgSchema, query, schema};
use crate::sql_steps::Schema;

fn options() -> PgOptions {
    PgOptions {
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        ..PgOptions::default()
    }
}

/// The server's certificate file (Debian's is self-signed for `localhost`), or
/// `None` (after a notice) when the server does not offer TLS outside CI.
async fn server_certificate(pg: &PgSchema) -> Option<String> {
    let rows = query(
        &pg.url,
        "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
    )
    .await;
    let (on, file): (String, String) = (rows[0].get(0), rows[0].get(1));
    if on != "on" {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the test PostgreSQL does not offer TLS (ssl = {on})"
        );
        crate::skips::skipped("PostgreSQL TLS", "the test PostgreSQL does not offer TLS");
        return None;
    }
    // Relative paths are relative to the server's data directory.
    let file = if file.starts_with('/') {
        file
    } else {
        let dir: String =
            query(&pg.url, "SELECT current_setting('data_directory')").await[0].get(0);
        format!("{dir}/{file}")
    };
    Some(file)
}

/// `url` with `options` added to its query string.
fn with(url: &str, options: &str) -> String {
    format!("{url}&{options}")
}

/// The same database, reached by the name `localhost` (the name on Debian's
/// certificate) instead of an address.
fn by_name(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the test database is not reached over TCP: {other:?}"),
    };
    url.replacen(&format!("@{host}"), "@localhost", 1)
}

/// How many of the connections named `app` are encrypted, and how many there are.
async fn encrypted(pg: &PgSchema, app: &str) -> (i64, i64) {
    let rows = query(
        &pg.url,
        &format!(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*)
               FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name LIKE '{app}%'"
        ),
    )
    .await;
    (rows[0].get(0), rows[0].get(1))
}

fn unavailable(r: Result<Store, StoreError>) -> String {
    match r {
        Ok(_) => panic!("the store connected"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_encrypts_by_default_and_sslmode_means_what_it_means_in_libpq() {
    let Some(pg) = schema("store_tls").await else {
        return;
    };
    let Some(cert) = server_certificate(&pg).await else {
        return;
    };
    let app = format!("fgtls{}", std::process::id());

    // No sslmode: `prefer`, and this server offers TLS; `disable`: in the clear.
    for (name, mode, clear) in [("a", "", false), ("b", "&sslmode=disable", true)] {
        let store = Store::connect(
            &with(&pg.url, &format!("application_name={app}{name}{mode}")),
            options(),
        )
        .await
        .unwrap();
        let (tls, all) = encrypted(&pg, &format!("{app}{name}")).await;
        assert!(all > 0, "the store holds connections");
        if clear {
            assert_eq!(tls, 0, "sslmode=disable connects in the clear");
        } else {
            assert_eq!(tls, all, "every store connection is encrypted");
        }
        // The notification listener: named after the URL's application_name, and
        // connected the same way.
        let _news = store.shared().unwrap().listen();
        let listener = format!("{app}{name}-listen");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (tls, all) = loop {
            let (tls, all) = encrypted(&pg, &listener).await;
            if all > 0 || std::time::Instant::now() > deadline {
                break (tls, all);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(all, 1, "one listener connection named {listener}");
        assert_eq!(tls, if clear { 0 } else { 1 }, "{listener}");
        drop(store);
    }

    // The server's own certificate as the CA: the chain checks out.
    let root = format!("sslrootcert={}", cert.replace('/', "%2F"));
    let verify_full = with(&by_name(&pg.url), &format!("sslmode=verify-full&{root}"));
    Store::connect(&verify_full, options()).await.unwrap();
    // By address the name does not match; verify-ca does not look at it.
    let e = unavailable(
        Store::connect(
            &with(&pg.url, &format!("sslmode=verify-full&{root}")),
            options(),
        )
        .await,
    );
    assert!(e.contains("certificate"), "{e}");
    Store::connect(
        &with(&pg.url, &format!("sslmode=verify-ca&{root}")),
        options(),
    )
    .await
    .unwrap();

    // CAs that did not sign the server's certificate: the public ones.
    let public = "/etc/ssl/certs/ca-certificates.crt";
    if std::path::Path::new(public).exists() {
        let e = unavailable(
            Store::connect(
                &with(
                    &by_name(&pg.url),
                    &format!(
                        "sslmode=verify-full&sslrootcert={}",
                        public.replace('/', "%2F")
                    ),
                ),
                options(),
            )
            .await,
        );
        assert!(e.contains("UnknownIssuer"), "{e}");
    } else {
        eprintln!("not checking an unknown issuer: {public} is not here");
    }
    // The machine's CA store (which on Debian also holds the server's own
    // certificate): read, and the certificate still fails for the address.
    let e = unavailable(
        Store::connect(
            &with(&pg.url, "sslmode=verify-full&sslrootcert=system"),
            options(),
        )
        .await,
    );
    assert!(e.contains("invalid peer certificate"), "{e}");

    // Over a Unix socket the server offers no TLS, and `prefer` connects without.
    let dir: String = query(
        &pg.url,
        "SELECT split_part(current_setting('unix_socket_directories'), ',', 1)",
    )
    .await[0]
        .get(0);
    if std::path::Path::new(dir.trim()).exists() {
        let host = dir.trim().replace('/', "%2F");
        let config: tokio_postgres::Config = pg.url.parse().unwrap();
        let tokio_postgres::config::Host::Tcp(tcp) = &config.get_hosts()[0] else {
            unreachable!()
        };
        Store::connect(
            &pg.url.replacen(&format!("@{tcp}"), &format!("@{host}"), 1),
            options(),
        )
        .await
        .unwrap();
    }

    let e = unavailable(Store::connect(&with(&pg.url, "sslmode=verify-full"), options()).await);
    assert!(e.contains("sslrootcert"), "{e}");
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_says_so() {
    // Answers PostgreSQL's TLS request with `N` (no TLS here), as a server
    // without `ssl = on` does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                if socket.read_exact(&mut request).await.is_ok() {
                    let _ = socket.write_all(b"N").await;
                    let mut rest = [0u8; 256];
                    let _ = socket.read(&mut rest).await;
                }
            });
        }
    });
    let url = format!("postgres://flowgate@127.0.0.1:{port}/db?sslmode=require");
    let e = unavailable(Store::connect(&url, options()).await);
    assert!(e.contains("TLS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_steps_connect_with_the_sslmode_of_their_connection() {
    let Some(schema) = Schema::create("fg_tls_sql").await else {
        return;
    };
    let flow = "auth: { none: true }\nmethods: [GET]\nsteps:\n  - sql: { connection: db, query: \"select ssl from pg_stat_ssl where pid = pg_backend_pid()\", single: true, into: row }\n  - respond: { body: .vars.row }\n";
    for (mode, expect) in [("require", true), ("disable", false)] {
        let tenant = format!(
            "connections:\n  db: {{ postgres: \"{}&sslmode={mode}\", pool_size: 2 }}\n",
            schema.url
        );
        let app = crate::helpers::spawn_tenant("db", tenant, &[("Ssl", flow)]).await;
        let res = app.get("/db/Ssl", None).await;
        assert_eq!(res.status(), StatusCode::OK, "sslmode={mode}");
        let row: Value = res.json().await.unwrap();
        assert_eq!(row["ssl"], Value::Bool(expect), "sslmode={mode}");
    }
    schema.drop().await;
}
