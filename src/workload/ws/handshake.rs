//! Opening one connection: TCP from the next source address (round-robin over
//! `WsConfig::source_ips`), TLS for `wss://`, then the WebSocket
//! upgrade with the bearer token and `traceparent`. Failures come back as (HTTP status, kind,
//! message) so the caller records one failed attempt with a reason that names host:port, never
//! the URL (its query carries the token).

use super::WsWorkload;
use crate::error::ErrorKind;
use crate::net::stream::Stream;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// k6's fixed WebSocket handshake timeout (TCP connect + TLS + upgrade).
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a refused upgrade's response body goes into the failure's reason.
const UPGRADE_BODY_CHARS: usize = 120;

/// Per-connection buffers: small on purpose (target ≤ 16 KiB client memory per idle connection).
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

impl WsWorkload {
    async fn tcp(&self) -> io::Result<TcpStream> {
        let source = if self.cfg.source_ips.is_empty() {
            None
        } else {
            let i = self.next_ip.fetch_add(1, Ordering::Relaxed) % self.cfg.source_ips.len();
            Some(self.cfg.source_ips[i])
        };
        let mut last_err = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            let res = match source {
                None => TcpStream::connect(addr).await,
                Some(ip) if ip.is_ipv4() != addr.is_ipv4() => continue,
                Some(ip) => {
                    let sock = if ip.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    sock.bind(SocketAddr::new(ip, 0))?;
                    sock.connect(addr).await
                }
            };
            match res {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "no address of {} matches the source address family",
                    self.host
                ),
            )
        }))
    }

    /// TCP (+TLS) + upgrade. Errors carry the HTTP status (0 when no response came back).
    pub(super) async fn connect(
        &self,
        traceparent: Option<&str>,
    ) -> Result<WebSocketStream<Stream>, (u16, ErrorKind, String)> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| (0, ErrorKind::Other, format!("bad request: {e}")))?;
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.cfg.token)) {
            h.insert("authorization", v);
        }
        h.insert(
            "user-agent",
            HeaderValue::from_static(concat!("novaload/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            h.insert("traceparent", v);
        }
        // messages name host:port, never the URL (its query carries the token)
        let peer = format!("{}:{}", self.host, self.port);
        let tcp = self
            .tcp()
            .await
            .map_err(|e| (0, ErrorKind::Connect, format!("connect to {peer}: {e}")))?;
        let stream = match &self.tls {
            Some(tls) if self.secure => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| {
                        (
                            0,
                            ErrorKind::Tls,
                            format!("TLS server name {}: {e}", self.host),
                        )
                    })?;
                let s = tls.connect(name, tcp).await.map_err(|e| {
                    let why = crate::net::http::describe_handshake_error(&e);
                    (
                        0,
                        ErrorKind::Tls,
                        format!("TLS handshake with {peer}: {why}"),
                    )
                })?;
                Stream::Tls(Box::new(s))
            }
            _ => Stream::Plain(tcp),
        };
        match tokio_tungstenite::client_async_with_config(req, stream, Some(websocket_config()))
            .await
        {
            Ok((ws, _resp)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let status = resp.status();
                let mut msg = format!(
                    "WebSocket upgrade refused by {peer}: HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                );
                // the server's own words, when it sent some ("invalid token")
                if let Some(body) = resp.body().as_deref().map(String::from_utf8_lossy) {
                    let body = body.trim();
                    if !body.is_empty() {
                        msg.push_str(": ");
                        msg.extend(body.chars().take(UPGRADE_BODY_CHARS));
                    }
                }
                Err((status.as_u16(), ErrorKind::Status, msg))
            }
            Err(WsError::Io(e)) => Err((
                0,
                ErrorKind::Connect,
                format!("WebSocket handshake with {peer}: {e}"),
            )),
            Err(WsError::Tls(e)) => {
                Err((0, ErrorKind::Tls, format!("TLS handshake with {peer}: {e}")))
            }
            Err(e) => Err((
                0,
                ErrorKind::Protocol,
                format!("WebSocket handshake with {peer}: {e}"),
            )),
        }
    }
}

pub(super) fn default_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
