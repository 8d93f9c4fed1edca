//! Collectors that are there but useless, on 127.0.0.1:0: a "black hole" that accepts
//! connections and never reads or answers, and a "resetting" one that accepts and closes each
//! connection at once with a TCP reset (SO_LINGER 0). The listener is kept for the server's
//! whole life; the accept thread stops when the handle is dropped (or after `MAX_LIFETIME`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bound of a server's accept loop, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(120);

/// What the server does with an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Keep it open, never read, never write.
    BlackHole,
    /// Close it at once with a reset.
    Reset,
}

pub struct DeadCollector {
    pub addr: SocketAddr,
    /// Connections accepted so far (proof that the exporter did connect).
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DeadCollector {
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let born = Instant::now();
            // black-hole connections stay open until the server stops
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(Ordering::Relaxed) && born.elapsed() < MAX_LIFETIME {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        match behaviour {
                            Behaviour::BlackHole => held.push(stream),
                            Behaviour::Reset => {
                                let _ = socket2::SockRef::from(&stream)
                                    .set_linger(Some(Duration::ZERO));
                                drop(stream);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(held);
        });
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, an OTLP endpoint for either protocol.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DeadCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
