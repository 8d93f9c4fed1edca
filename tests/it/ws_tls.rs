//! `run ws` over `wss://` honours `--cacert` and `--insecure-skip-tls-verify`, through the
//! whole session (flags → TLS settings → the WebSocket client), against a TLS WebSocket server
//! written here with a certificate from a test CA (`tests/support/tls/`).

use futures_util::{SinkExt, StreamExt};
use novaload::cli::{RunArgs, TestName};
use novaload::report::{Summary, Verdict};
use novaload::session::{self, Stops};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls")
}

/// A wss server on 127.0.0.1:0 (certificate for `localhost` and `127.0.0.1`, signed by
/// `ca.pem`) answering every text frame with a valid realtime frame.
async fn wss_server() -> std::net::SocketAddr {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut &std::fs::read(tls_dir().join("server.pem")).unwrap()[..])
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        rustls_pemfile::private_key(&mut &std::fs::read(tls_dir().join("server.key")).unwrap()[..])
            .unwrap()
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // the preflight's bare TCP connect and rejected handshakes end here
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(_) => {
                            let frame = serde_json::json!({
                                "type": "pong",
                                "channel": "system",
                                "timestamp": chrono::Utc::now().timestamp_millis(),
                            });
                            if ws.send(Message::text(frame.to_string())).await.is_err() {
                                return;
                            }
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

async fn run_wss(addr: std::net::SocketAddr, tweak: impl FnOnce(&mut RunArgs)) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let mut a = RunArgs {
        test: Some(TestName::Ws),
        api_url: Some(format!("https://{addr}")),
        ws_url: Some(format!("wss://{addr}/ws")),
        profile: Some("smoke".into()),
        stages: vec!["1s:20".into(), "2s:20".into(), "1s:0".into()],
        ws_session: Some("6s".into()),
        out: dir.path().to_path_buf(),
        quiet: true,
        no_telemetry: true,
        timeout: "10s".into(),
        ..RunArgs::with_defaults()
    };
    tweak(&mut a);
    let o = session::run(a, Stops::default()).await.unwrap();
    o.summaries.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_trusts_cacert_and_honours_insecure_and_fails_without_either() {
    let addr = wss_server().await;

    let with_ca = run_wss(addr, |a| a.cacert = Some(tls_dir().join("ca.pem"))).await;
    let missed: Vec<_> = with_ca.thresholds.iter().filter(|t| !t.ok).collect();
    assert_eq!(with_ca.verdict, Verdict::Pass, "--cacert: {missed:?}");
    assert_eq!(with_ca.value("ws_connection_success", "rate"), Some(1.0));
    assert_eq!(
        with_ca.value("ws_connections_established", "count"),
        Some(20.0)
    );

    let insecure = run_wss(addr, |a| a.insecure_skip_tls_verify = true).await;
    assert_eq!(insecure.value("ws_connection_success", "rate"), Some(1.0));
    assert_eq!(insecure.verdict, Verdict::Pass);

    // the test CA is not in the web PKI roots: every handshake fails, as a TLS error
    let untrusted = run_wss(addr, |_| {}).await;
    assert_eq!(untrusted.value("ws_connection_success", "rate"), Some(0.0));
    assert_eq!(
        untrusted
            .value("ws_connections_established", "count")
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(untrusted.verdict, Verdict::Fail);
    let json = serde_json::to_string(&untrusted).unwrap();
    assert!(json.contains("tls"), "the failures are TLS errors");
    // and they say why, with the fix
    let reasons = untrusted.error_reasons.top("tls", 1);
    assert!(
        reasons.first().is_some_and(|(m, _)| m
            .contains("certificate not trusted (unknown issuer)")
            && m.contains("--cacert")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn unreadable_cacert_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let a = RunArgs {
        test: Some(TestName::Ws),
        api_url: Some("https://127.0.0.1:9".into()),
        ws_url: Some("wss://127.0.0.1:9/ws".into()),
        cacert: Some(dir.path().join("missing.pem")),
        out: dir.path().to_path_buf(),
        quiet: true,
        no_telemetry: true,
        ..RunArgs::with_defaults()
    };
    let e = session::run(a, Stops::default()).await.unwrap_err();
    let c = e
        .downcast_ref::<novaload::error::ConfigError>()
        .unwrap_or_else(|| panic!("a config error, got {e:#}"));
    assert!(c.to_string().contains("--cacert"), "{c}");
}
