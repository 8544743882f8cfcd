//! PostgreSQL servers of the tests' own, for what the shared test server cannot
//! show: it trusts local connections (so no password or certificate login), and
//! stopping it would disturb every test beside. Each is made by `initdb` in a
//! temporary directory, serves TLS with the machine's own (snakeoil) certificate
//! and runs as the `postgres` user. Needs root (to run it as `postgres`), the
//! server's binaries and `openssl` (each server gets a CA of its own, for
//! certificate tests); without them a test is skipped with a notice, unless
//! `CI=true`, where it fails.

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

/// A command's outcome: `Ok` when it succeeded, else what it said, named `what`.
pub fn checked(what: &str, out: std::io::Result<Output>) -> Result<(), String> {
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

/// The test's own CA in `dir` (`ca.pem`), and from it: a certificate for the user
/// `postgres` (`client.pem`, `client.key`), one for the server as `localhost`
/// (`server.pem`, `server.key`), and two revocation lists, `empty.crl` and
/// `revoked.crl` (which revokes the server's).
fn issue_certificates(dir: &Path) -> Result<(), String> {
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split(' ').collect();
        checked(
            &format!("openssl {}", args.join(" ")),
            Command::new("openssl").current_dir(dir).args(args).output(),
        )
    };
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {new_key} -keyout ca.key -out ca.pem -subj /CN=flowgate-test-ca -days 2"
    ))?;
    // With extensions, so that they are X.509 v3 certificates.
    let leaf = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n";
    write(
        "client.ext",
        &format!("{leaf}extendedKeyUsage=clientAuth\n"),
    )?;
    write(
        "server.ext",
        &format!("{leaf}extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n"),
    )?;
    for (name, subject) in [("client", "postgres"), ("server", "localhost")] {
        openssl(&format!(
            "req {new_key} -keyout {name}.key -out {name}.csr -subj /CN={subject}"
        ))?;
        openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ))?;
    }
    // PostgreSQL takes a key file only if nobody else may read it.
    checked(
        "chmod",
        Command::new("chmod")
            .arg("600")
            .arg(dir.join("server.key"))
            .output(),
    )?;
    write(
        "ca.cnf",
        "[ca]\ndefault_ca=test\n[test]\ndatabase=index.txt\ncrlnumber=crlnumber\n\
         default_md=sha256\ndefault_crl_days=2\n",
    )?;
    write("index.txt", "")?;
    write("crlnumber", "01\n")?;
    let ca = "ca -config ca.cnf -keyfile ca.key -cert ca.pem";
    openssl(&format!("{ca} -gencrl -out empty.crl"))?;
    openssl(&format!("{ca} -revoke server.pem"))?;
    openssl(&format!("{ca} -gencrl -out revoked.crl"))
}

impl Cluster {
    /// A server with the machine's snakeoil certificate.
    pub fn start(login: Login) -> Result<Self, String> {
        Self::start_with(login, false)
    }

    /// With `own_certificate`, the server shows the one the test's CA issued.
    pub fn start_with(login: Login, own_certificate: bool) -> Result<Self, String> {
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
        issue_certificates(dir.path())?;
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
        let (cert, key) = if own_certificate {
            let at = |name: &str| dir.path().join(name).display().to_string();
            (at("server.pem"), at("server.key"))
        } else {
            (CERT.to_owned(), KEY.to_owned())
        };
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file={cert} -c ssl_key_file={key}",
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

    /// Where the test's own CA put a file (`ca.pem`, `client.pem`, `revoked.crl`, ...).
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
    or_skip(Cluster::start(login), test)
}

/// `started`, or `None` after a notice (a failure under `CI=true`).
pub fn or_skip(started: Result<Cluster, String>, test: &str) -> Option<Cluster> {
    match started {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(
                !ci(),
                "CI=true but no PostgreSQL server of its own for {test}: {e}"
            );
            crate::skips::skipped("PostgreSQL server of its own", e);
            None
        }
    }
}
