//! Opens N idle WebSocket connections to a URL and holds them (bench/target.sh measures the
//! server's memory per connection with it): `ws_idle URL N HOLD_SECS`.
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let url = a
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws/realtime".into());
    let n: usize = a.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let hold: u64 = a.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::increase_nofile_limit(hard);
    }
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0usize;
    for chunk in 0..n.div_ceil(500) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..500.min(n - chunk * 500) {
            let url = url.clone();
            set.spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_tungstenite::connect_async(url),
                )
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(Ok((ws, _)))) => conns.push(ws),
                _ => failed += 1,
            }
        }
    }
    println!("open={} failed={failed}", conns.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}
