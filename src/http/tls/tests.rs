use std::path::Path;

use super::*;

/// A self-signed certificate for `localhost` and its key, as PEM.
fn pair() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

fn write(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

fn served(tls: &Tls) -> Vec<u8> {
    tls.current.0.read().unwrap().cert[0].to_vec()
}

#[test]
fn every_bad_pair_names_its_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (pair(), pair());
    let (cert, key) = write(dir.path(), &one);
    let tls = Tls::load(cert.clone(), key.clone()).unwrap();
    assert!(tls.server_config().is_ok());

    std::fs::write(&key, &two.1).unwrap();
    let e = Tls::load(cert.clone(), key.clone()).err().unwrap();
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e:?}");
    let said = crate::domain::chain::describe(&e);
    assert!(said.contains(&*key.to_string_lossy()) && said.contains(&*cert.to_string_lossy()));

    std::fs::write(&key, "not a key\n").unwrap();
    let e = Tls::load(cert.clone(), key.clone()).err().unwrap();
    assert!(matches!(e, TlsError::NoKey(ref p) if *p == key), "{e:?}");

    let missing = dir.path().join("missing.pem");
    let e = Tls::load(cert.clone(), missing.clone()).err().unwrap();
    assert!(
        matches!(e, TlsError::Read { setting: "tls_key", ref path, .. } if *path == missing),
        "{e:?}"
    );
    assert!(crate::domain::chain::describe(&e).contains("missing.pem"));

    std::fs::write(&cert, "").unwrap();
    std::fs::write(&key, &one.1).unwrap();
    let e = Tls::load(cert.clone(), key).err().unwrap();
    assert!(matches!(e, TlsError::NoCert(ref p) if *p == cert), "{e:?}");
}

#[test]
fn a_changed_pair_is_swapped_in_and_a_bad_one_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (pair(), pair());
    let (cert, key) = write(dir.path(), &one);
    let mut tls = Tls::load(cert.clone(), key.clone()).unwrap();
    let first = served(&tls);
    assert!(!tls.reload_if_changed(), "nothing changed");

    write(dir.path(), &two);
    assert!(tls.reload_if_changed());
    let second = served(&tls);
    assert_ne!(first, second);

    // A renewal caught half-written (a new certificate, the old key): the pair in
    // use stays until the key is there too.
    let three = pair();
    std::fs::write(&cert, &three.0).unwrap();
    assert!(!tls.reload_if_changed());
    assert_eq!(served(&tls), second);
    std::fs::write(&key, &three.1).unwrap();
    assert!(tls.reload_if_changed());
    assert_ne!(served(&tls), second);
}
