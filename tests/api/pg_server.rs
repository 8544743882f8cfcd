//! PostgreSQL servers of the tests' own, for what the shared test server cannot
//! show: it trusts local connections (so no password or certificate login), and
//! stopping it would disturb every test beside. Each is made by `initdb` in a
//! temporary directory, serves TLS with the machine's own (snakeoil) certificate
//! and runs as the `postgres` user. Needs root (to run it as `postgres`), the
//! server's binaries and, for certificates, `openssl`; without them a test is
//! skipped with a notice, unless `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::pg::ci;

pub const CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
pub const KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";
pub const PASSWORD: &str = "scram-secret";

/// How the server logs clients in over TCP.
#[derive(PartialEq)]
pub enum Login {
    /// Anyone, as anyone (as the shared test server does).
    Trust,
    Scram,
    /// By a certificate issued by the test's own CA, its name the user's.
    Certificate,
}

/// A PostgreSQL server in a temporary directory, stopped when dropped.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// `postgres` options, kept to start it again.
    options: String,
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
    pub fn start(login: Login) -> Result<Self, String> {
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
                .args(["-U", "postgres", "--auth-local=trust"])
                .arg(if login == Login::Trust {
                    "--auth-host=trust"
                } else {
                    "--auth-host=scram-sha-256"
                })
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
            options,
            dir,
            bin,
        };
        cluster.start_again()?;
        Ok(cluster)
    }

    /// `pg_ctl` on this server's data directory, as `postgres`.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .output();
        checked(&format!("pg_ctl {}", args.last().unwrap_or(&"")), out)
    }

    /// Starts the stopped server (on the same port); returns once it is ready.
    pub fn start_again(&self) -> Result<(), String> {
        let log = self.data.join("log").display().to_string();
        self.pg_ctl(&["-w", "-l", &log, "-o", &self.options, "start"])
    }

    /// Stops the server as an operator would for a restart: sessions are ended
    /// (`57P01`), a checkpoint is written, the port closes.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-w", "-m", "fast", "stop"])
    }

    /// A store URL for this server (as `localhost`, the name in its certificate).
    pub fn url(&self, password: &str, options: &str) -> String {
        format!(
            "postgres://postgres:{password}@localhost:{}/postgres?{options}",
            self.port
        )
    }

    /// Where the test's own CA put a file (`client.pem`, `client.key`).
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// A server of the test's own, or `None` (after a notice) where none can be made.
pub fn cluster(login: Login, test: &str) -> Option<Cluster> {
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
