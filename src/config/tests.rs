use super::*;

#[test]
fn file_then_env() {
    let s: Settings = toml::from_str("listen = \"127.0.0.1:9000\"\nretention = \"2d\"\n").unwrap();
    assert_eq!(s.listen, "127.0.0.1:9000");
    assert_eq!(s.retention, Duration::from_secs(2 * 86400));
    assert_eq!(s.max_backlog, 10_000);
    let mut s = s;
    let errs = s
        .apply_env(&[
            ("FLOWGATE_STORE".into(), "sqlite:///tmp/x.db".into()),
            ("FLOWGATE_MAX_BACKLOG".into(), "lots".into()),
        ])
        .unwrap_err();
    assert_eq!(s.store, "sqlite:///tmp/x.db");
    assert_eq!(
        errs,
        vec!["FLOWGATE_MAX_BACKLOG=lots: not a number".to_owned()]
    );
    assert!(toml::from_str::<Settings>("nope = 1").is_err());
}

#[test]
fn store_session_timeouts_default_below_the_lease() {
    let mut s = Settings::default();
    let o = s.pg_options();
    assert_eq!(o.lock_timeout, Duration::from_secs(5));
    assert_eq!(o.idle_in_transaction_timeout, Duration::from_secs(5));
    s.apply_env(&[("FLOWGATE_LEASE".into(), "2s".into())])
        .unwrap();
    assert_eq!(s.pg_options().lock_timeout, Duration::from_secs(1));
    s.apply_env(&[
        ("FLOWGATE_STORE_LOCK_TIMEOUT".into(), "300ms".into()),
        (
            "FLOWGATE_STORE_IDLE_IN_TRANSACTION_TIMEOUT".into(),
            "2s".into(),
        ),
    ])
    .unwrap();
    assert_eq!(s.pg_options().lock_timeout, Duration::from_millis(300));
    let errs = s.validate().unwrap_err();
    assert_eq!(
        errs,
        vec!["store_idle_in_transaction_timeout must be greater than 0 and below the lease (2s), not 2s".to_owned()]
    );
    let file: Settings = toml::from_str("store_lock_timeout = \"1s\"").unwrap();
    assert_eq!(file.store_lock_timeout, Some(Duration::from_secs(1)));
}

#[test]
fn budgets_and_executors() {
    let s = Settings::default();
    assert_eq!(s.flow_time_limit, Duration::from_secs(30));
    assert_eq!(s.flow_memory_limit, 256 << 20);
    assert_eq!(s.tenant_max_running(), 2 * s.executor_threads());
    let s: Settings = toml::from_str(
        "flow_time_limit = \"2s\"\nflow_memory_limit = \"64MiB\"\nexecutor_threads = 3\n",
    )
    .unwrap();
    assert_eq!(s.flow_limits().time, Duration::from_secs(2));
    assert_eq!(s.flow_limits().memory, 64 << 20);
    assert_eq!(s.tenant_max_running(), 6);
    assert_eq!(s.sandbox_options().unwrap().max_workers, 12);
    let mut s = Settings::default();
    let errs = s
        .apply_env(&[
            ("FLOWGATE_FLOW_MEMORY_LIMIT".into(), "1GiB".into()),
            ("FLOWGATE_TENANT_MAX_RUNNING".into(), "5".into()),
            ("FLOWGATE_FLOW_TIME_LIMIT".into(), "soon".into()),
        ])
        .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((s.flow_memory_limit, s.tenant_max_running()), (1 << 30, 5));
    assert!(toml::from_str::<Settings>("flow_memory_limit = \"lots\"").is_err());
    let zero: Settings = toml::from_str("flow_memory_limit = 0\nflow_time_limit = \"0s\"").unwrap();
    assert_eq!(zero.validate().unwrap_err().len(), 2);
}

#[test]
fn admin_tokens_and_subscription_settings() {
    let s: Settings = toml::from_str(
        "subscriptions_retry = [\"1s\", \"2m\"]\n[[admin_tokens]]\nlabel = \"ops\"\nhash = \"nope\"\ntenants = [\"acme\", \"_x\"]\n",
    )
    .unwrap();
    assert_eq!(
        s.subscriptions_retry,
        vec![Duration::from_secs(1), Duration::from_secs(120)]
    );
    let errs = s.validate().unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("flowgate token new"));
    assert!(errs[1].contains("reserved"));
    assert_eq!(Settings::default().subscriptions_retry.len(), 8);
    let mut s = Settings::default();
    s.apply_env(&[("FLOWGATE_SUBSCRIPTIONS_RETRY".into(), "5s, 30s".into())])
        .unwrap();
    assert_eq!(
        s.subscriptions_retry,
        vec![Duration::from_secs(5), Duration::from_secs(30)]
    );
}

#[test]
fn tls_settings_come_in_pairs() {
    let s: Settings =
        toml::from_str("tls_cert = \"/etc/fg/cert.pem\"\ntls_reload_interval = \"2s\"\n").unwrap();
    assert_eq!(s.tls_cert, Some(PathBuf::from("/etc/fg/cert.pem")));
    assert_eq!(s.tls_reload_interval, Duration::from_secs(2));
    assert_eq!(
        s.validate().unwrap_err(),
        vec![
            "tls_cert is set but tls_key is not: HTTPS needs the certificate and its key"
                .to_owned()
        ]
    );
    let mut s = Settings::default();
    assert_eq!(s.tls_reload_interval, Duration::from_secs(10));
    s.apply_env(&[
        ("FLOWGATE_TLS_KEY".into(), "/k.pem".into()),
        ("FLOWGATE_TLS_RELOAD_INTERVAL".into(), "0s".into()),
    ])
    .unwrap();
    assert_eq!(s.tls_key, Some(PathBuf::from("/k.pem")));
    let errs = s.validate().unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("tls_key is set but tls_cert is not"));
    s.apply_env(&[
        ("FLOWGATE_TLS_CERT".into(), "/c.pem".into()),
        ("FLOWGATE_TLS_RELOAD_INTERVAL".into(), "5s".into()),
    ])
    .unwrap();
    assert_eq!(s.validate(), Ok(()));
}
