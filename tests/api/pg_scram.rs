//! SCRAM authentication, with and without channel binding, against a PostgreSQL
//! server of the test's own: the shared test server trusts local connections and
//! never asks for a password. `initdb` with `scram-sha-256` for TCP connections,
//! TLS with the machine's own (snakeoil) certificate, run as the `postgres` user.
//! Needs root (to run the server as `postgres`) and the server's binaries; without
//! them the test is skipped with a notice, unless `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::pg::ci;

const CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";
const PASSWORD: &str = "scram-secret";

/// A PostgreSQL server in a temporary directory, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn checked(what: &str, out: std::io::Result<Output>) -> Result<(), String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `cmd` run as the `postgres` user.
fn as_postgres(program: &std::path::Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return Err("the server is started as `postgres`, which needs root".into());
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        checked(
            "chown",
            Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .output(),
        )?;
        checked(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                ])
                .args(["--no-sync", "-E", "UTF8"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output(),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file={CERT} -c ssl_key_file={KEY}",
            dir.path().display()
        );
        let cluster = Self {
            data,
            port,
            _dir: dir,
            bin,
        };
        checked(
            "pg_ctl start",
            as_postgres(&cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&cluster.data)
                .args(["-w", "-l"])
                .arg(cluster.data.join("log"))
                .args(["-o", &options, "start"])
                .output(),
        )?;
        Ok(cluster)
    }

    /// A store URL for this server (as `localhost`, the name in its certificate).
    fn url(&self, password: &str, options: &str) -> String {
        format!(
            "postgres://postgres:{password}@localhost:{}/postgres?{options}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

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
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !ci(),
                "CI=true but no PostgreSQL server of the test's own: {e}"
            );
            eprintln!("skipping scram_binds_to_the_servers_certificate: {e}");
            return;
        }
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
