//! Logging in to PostgreSQL by password (SCRAM, with and without channel binding)
//! and by client certificate, against servers of the tests' own: the shared test
//! server trusts local connections and asks for neither. Each is made by `initdb`
//! in a temporary directory, serves TLS with the machine's own (snakeoil)
//! certificate and runs as the `postgres` user. Needs root (to run it as
//! `postgres`), the server's binaries and `openssl`; without them a test is skipped
//! with a notice, unless `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::pg::ci;

const CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";
const PASSWORD: &str = "scram-secret";

/// How the server logs clients in over TCP.
#[derive(PartialEq)]
enum Login {
    Scram,
    /// By a certificate issued by the test's own CA, its name the user's.
    Certificate,
}

/// A PostgreSQL server in a temporary directory, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
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

/// `program` run as the `postgres` user.
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

/// A CA, and from it a certificate for the user `postgres`, in `dir`:
/// `ca.pem`, `client.pem`, `client.key`.
fn issue_client_certificate(dir: &Path) -> Result<(), String> {
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split(' ').collect();
        checked(
            &format!("openssl {}", args.join(" ")),
            Command::new("openssl").current_dir(dir).args(args).output(),
        )
    };
    let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {new_key} -keyout ca.key -out ca.pem -subj /CN=flowgate-test-ca -days 2"
    ))?;
    openssl(&format!(
        "req {new_key} -keyout client.key -out client.csr -subj /CN=postgres"
    ))?;
    // With extensions, so that it is an X.509 v3 certificate.
    let ext = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
    std::fs::write(dir.join("client.ext"), ext).map_err(|e| e.to_string())?;
    openssl(
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem \
         -days 2 -extfile client.ext",
    )
}

impl Cluster {
    fn start(login: Login) -> Result<Self, String> {
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
        if login == Login::Certificate {
            issue_client_certificate(dir.path())?;
        }
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
        if login == Login::Certificate {
            // The certificate's name is the user's; TLS only.
            let hba = "local all all trust\n\
                       hostssl all all 127.0.0.1/32 cert\n\
                       hostssl all all ::1/128 cert\n";
            std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file={CERT} -c ssl_key_file={KEY}",
            dir.path().display()
        );
        if login == Login::Certificate {
            options.push_str(&format!(
                " -c ssl_ca_file={}",
                dir.path().join("ca.pem").display()
            ));
        }
        let cluster = Self {
            data,
            port,
            dir,
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

    /// Where the test's own CA put a file (`client.pem`, `client.key`).
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
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

/// A server of the test's own, or `None` (after a notice) where none can be made.
fn cluster(login: Login, test: &str) -> Option<Cluster> {
    match Cluster::start(login) {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(
                !ci(),
                "CI=true but no PostgreSQL server of the test's own: {e}"
            );
            eprintln!("skipping {test}: {e}");
            None
        }
    }
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
