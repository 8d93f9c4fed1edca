//! The open part of one session: subscribe, then one `select!` loop over the end of the run, the
//! session timer, inbound frames, the ping timer and the query timer, until we close, the server
//! closes, or the connection fails (`SessionEnd`). Frames we send are built here; inbound text
//! frames go to `WsWorkload::on_text` (`frames.rs`).

use super::{WsWorkload, now_ms};
use crate::metrics::Sample;
use crate::net::stream::Stream;
use crate::workload::Vu;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long to wait for the server's close reply after we send ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How an opened session ended.
pub(super) enum SessionEnd {
    /// We closed it (session timer or end of run), code 1001.
    Closed,
    /// The server closed it with 1000 or 1001.
    ServerClosed(u16),
    /// k6's `error` event: abnormal close code, drop without close frame (1006), failed send.
    Error(u16, String),
}

impl WsWorkload {
    pub(super) fn sent(&self, vu: &Vu) {
        vu.record(Sample::WsMessage {
            counter: self.m.sent,
            sent: true,
        });
    }

    fn random_query(&self, vu: &mut Vu) -> serde_json::Value {
        match vu.rng.random_range(0..3u8) {
            0 => serde_json::json!({
                "type": "vm_query",
                "action": "get_status",
                "vm_id": format!("vm-{}", vu.rng.random_range(0..1000u32)),
            }),
            1 => serde_json::json!({
                "type": "metric_query",
                "action": "get_metrics",
                "resource": "cpu",
            }),
            _ => serde_json::json!({
                "type": "event_subscribe",
                "filters": {"severity": "high"},
            }),
        }
    }

    /// The open part of a session, until we close, the server closes, or the connection fails.
    pub(super) async fn session(
        &self,
        vu: &mut Vu,
        ws: &mut WebSocketStream<Stream>,
        traceparent: Option<&str>,
        trace: Option<&str>,
    ) -> SessionEnd {
        let send = |v: serde_json::Value| Message::text(with_traceparent(v, traceparent));
        for channel in ["vm_status", "system_metrics", "alerts"] {
            let msg = send(serde_json::json!({"action": "subscribe", "channel": channel}));
            if let Err(e) = ws.send(msg).await {
                return SessionEnd::Error(1006, format!("send: {e}"));
            }
            self.sent(vu);
        }
        let opened = tokio::time::Instant::now();
        let min = self.cfg.session_min.as_millis() as u64;
        let max = self.cfg.session_max.as_millis() as u64;
        let length = if max > min {
            vu.rng.random_range(min..max)
        } else {
            min
        };
        let deadline = tokio::time::sleep_until(opened + Duration::from_millis(length));
        tokio::pin!(deadline);
        let mut ping = tokio::time::interval_at(opened + self.cfg.ping_every, self.cfg.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut query =
            tokio::time::interval_at(opened + self.cfg.query_every, self.cfg.query_every);
        query.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = vu.stop.clone();
        loop {
            // biased: the session end wins over a timer tick due at the same instant
            let out = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    close(ws).await;
                    return SessionEnd::Closed;
                }
                _ = &mut deadline => {
                    let msg = send(serde_json::json!({"type": "disconnect"}));
                    if let Err(e) = ws.send(msg).await {
                        return SessionEnd::Error(1006, format!("send: {e}"));
                    }
                    self.sent(vu);
                    close(ws).await;
                    return SessionEnd::Closed;
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        self.on_text(vu, t.as_str(), now_ms(), trace);
                        None
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite queued the echo of the server's code; flush it out
                        let _ = ws.flush().await;
                        let reason = frame.as_ref().map(|f| f.reason.as_str()).unwrap_or("");
                        let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                        return if matches!(code, 1000 | 1001) {
                            SessionEnd::ServerClosed(code)
                        } else if reason.is_empty() {
                            SessionEnd::Error(code, format!("closed by the server with code {code}"))
                        } else {
                            SessionEnd::Error(
                                code,
                                format!("closed by the server with code {code} ({reason})"),
                            )
                        };
                    }
                    // binary frames have no handler upstream; pings are answered by tungstenite
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return SessionEnd::Error(1006, format!("read: {e}")),
                    None => return SessionEnd::Error(1006, "connection dropped without a close frame".into()),
                },
                _ = ping.tick() => Some(serde_json::json!({
                    "type": "ping",
                    "timestamp": now_ms() as u64,
                    "client_id": format!("client-{}-{}", vu.id, random_lowercase(&mut vu.rng, 8)),
                })),
                _ = query.tick() => Some(self.random_query(vu)),
            };
            if let Some(v) = out {
                if let Err(e) = ws.send(send(v)).await {
                    return SessionEnd::Error(1006, format!("send: {e}"));
                }
                self.sent(vu);
            }
        }
    }
}

/// Sends close 1001 (k6's `socket.close()`), then waits briefly for the server's reply.
async fn close(ws: &mut WebSocketStream<Stream>) {
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Adds `"traceparent"` to a JSON object when tracing is on; serializes.
fn with_traceparent(mut v: serde_json::Value, traceparent: Option<&str>) -> String {
    if let (Some(tp), Some(obj)) = (traceparent, v.as_object_mut()) {
        obj.insert("traceparent".into(), serde_json::Value::from(tp));
    }
    v.to_string()
}

/// k6-utils `randomString(n)`: lowercase a–z.
fn random_lowercase(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn traceparent_goes_into_json_objects_only_when_present() {
        let v = json!({"type": "ping"});
        assert_eq!(with_traceparent(v.clone(), None), r#"{"type":"ping"}"#);
        let s = with_traceparent(
            v,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn random_strings_are_lowercase() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let s = random_lowercase(&mut rng, 8);
        assert_eq!(s.len(), 8);
        assert!(s.bytes().all(|b| b.is_ascii_lowercase()));
    }
}
