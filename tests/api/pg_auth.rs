//! Logging in to PostgreSQL by password (SCRAM, with and without channel binding)
//! and by client certificate, against servers of the tests' own (`pg_server.rs`):
//! the shared test server trusts local connections and asks for neither.

use std::process::{Command, Output};

use crate::pg_server::{CERT, Cluster, Login, PASSWORD, cluster, or_skip};

fn migrate(store: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["migrate", "--store", store])
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scram_binds_to_the_servers_certificate_when_asked_and_names_what_fails() {
    let Some(cluster) = cluster(Login::Scram, "scram_binds_to_the_servers_certificate") else {
        return;
    };
    // SCRAM-SHA-256-PLUS: `channel_binding=require` fails unless the client binds
    // to the certificate it was shown, and the server checks the binding.
    for options in [
        format!("sslmode=verify-full&sslrootcert={CERT}&channel_binding=require"),
        "sslmode=require&channel_binding=require".to_owned(),
        "sslmode=prefer".to_owned(),
    ] {
        let out = migrate(&cluster.url(PASSWORD, &options));
        assert!(out.status.success(), "{options}: {}", stderr(&out));
    }
    // Plain SCRAM without TLS.
    let out = migrate(&cluster.url(PASSWORD, "sslmode=disable"));
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing to bind to without TLS: refused before connecting, saying why.
    let out = migrate(&cluster.url(PASSWORD, "sslmode=disable&channel_binding=require"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sslmode=disable"), "{}", stderr(&out));
    // A wrong password, in PostgreSQL's words, and not shown.
    let out = migrate(&cluster.url(
        "not-the-password",
        "sslmode=require&channel_binding=require",
    ));
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
}

#[test]
fn a_client_certificate_logs_in_where_the_server_asks_for_one() {
    let Some(cluster) = cluster(Login::Certificate, "a_client_certificate_logs_in") else {
        return;
    };
    let (cert, key) = (cluster.file("client.pem"), cluster.file("client.key"));
    let url = |options: &str| cluster.url("", &format!("sslmode=require&{options}"));
    let out = migrate(&url(&format!("sslcert={cert}&sslkey={key}")));
    assert!(out.status.success(), "{}", stderr(&out));
    // Also checking the server's certificate.
    let out = migrate(&cluster.url(
        "",
        &format!("sslmode=verify-full&sslrootcert={CERT}&sslcert={cert}&sslkey={key}"),
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    // Without one, in PostgreSQL's words.
    let out = migrate(&url("channel_binding=disable"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // A certificate without its key is refused as the URL is read.
    let out = migrate(&url(&format!("sslcert={cert}")));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sslkey"), "{}", stderr(&out));
    // A key that is not one names the file.
    let out = migrate(&url(&format!("sslcert={cert}&sslkey={cert}")));
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&cert), "{}", stderr(&out));
}

#[test]
fn a_revoked_server_certificate_is_refused_when_revocation_lists_are_given() {
    let started = Cluster::start_with(Login::Trust, true);
    let Some(cluster) = or_skip(started, "a_revoked_server_certificate_is_refused") else {
        return;
    };
    let ca = cluster.file("ca.pem");
    let url =
        |extra: &str| cluster.url("", &format!("sslmode=verify-full&sslrootcert={ca}{extra}"));
    // Checked against the test's CA, revoked by nobody yet.
    for extra in [
        "".to_owned(),
        format!("&sslcrl={}", cluster.file("empty.crl")),
    ] {
        let out = migrate(&url(&extra));
        assert!(out.status.success(), "{extra}: {}", stderr(&out));
    }
    // The list that revokes it, as a file and in a directory of lists.
    let dir = cluster.file("crls");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(cluster.file("revoked.crl"), format!("{dir}/1a2b3c4d.r0")).unwrap();
    for extra in [
        format!("&sslcrl={}", cluster.file("revoked.crl")),
        format!("&sslcrldir={dir}"),
    ] {
        let out = migrate(&url(&extra));
        assert!(!out.status.success(), "{extra}");
        assert!(stderr(&out).contains("Revoked"), "{}", stderr(&out));
    }
    // A list only means something where the certificate is checked at all.
    let unchecked = format!("sslmode=require&sslcrl={}", cluster.file("revoked.crl"));
    let out = migrate(&cluster.url("", &unchecked));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("verify-ca"), "{}", stderr(&out));
    // A file that holds no list is named.
    let out = migrate(&url(&format!("&sslcrl={ca}")));
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&ca), "{}", stderr(&out));
}
