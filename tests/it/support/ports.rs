//! Addresses of listeners the tests start.
//!
//! Everything that can listen on port 0 does, and the test reads the bound address back:
//! novaload's `--metrics-listen 127.0.0.1:0` prints `novaload: live metrics on http://ADDR/metrics`
//! and `novaload target --listen 127.0.0.1:0` prints `novaload target listening on http://ADDR`
//! (both read with [`wait_for_line`]), in-process servers report `local_addr()`, and a program
//! that binds port 0 without saying where (Prometheus) is asked the kernel through
//! [`wait_listening`]. Only a program that must be told its port up front and cannot bind port
//! 0 at all (rotel) gets ports picked for it, through [`start_on_free_ports`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// A child process the helpers here can watch and stop: `std` or `tokio`.
pub trait Process {
    /// Its process id (0 once tokio has reaped it).
    fn pid(&self) -> u32;
    /// Whether it has ended.
    fn has_exited(&mut self) -> bool;
    /// Kills it and reaps it.
    fn stop(&mut self);
}

impl Process for std::process::Child {
    fn pid(&self) -> u32 {
        self.id()
    }
    fn has_exited(&mut self) -> bool {
        !matches!(self.try_wait(), Ok(None))
    }
    fn stop(&mut self) {
        let _ = self.kill();
        let _ = self.wait();
    }
}

impl Process for tokio::process::Child {
    fn pid(&self) -> u32 {
        self.id().unwrap_or(0)
    }
    fn has_exited(&mut self) -> bool {
        !matches!(self.try_wait(), Ok(None))
    }
    fn stop(&mut self) {
        let _ = self.start_kill();
        // reaps it (or finds it reaped); `start_kill` alone leaves a zombie until then
        let _ = self.try_wait();
    }
}

/// The TCP addresses process `pid` itself listens on: its sockets (`/proc/<pid>/fd`) that are
/// in the LISTEN state in `/proc/<pid>/net/tcp{,6}`. A port someone else took is not among them.
pub fn listening(pid: u32) -> Vec<SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let s = link.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let mut out = Vec::new();
    for (table, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            const LISTEN: &str = "0A";
            if f.len() < 10 || f[3] != LISTEN {
                continue;
            }
            let Ok(inode) = f[9].parse::<u64>() else {
                continue;
            };
            if inodes.contains(&inode)
                && let Some(addr) = proc_net_addr(f[1], v6)
            {
                out.push(addr);
            }
        }
    }
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): the address as 32-bit words printed
/// in host byte order, the port in hex.
fn proc_net_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match (v6, words.as_slice()) {
        (false, [w]) => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        (true, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Waits until `child` listens on at least one TCP address and returns them all: how the test
/// learns the port of a program started on port 0 that does not print the one it bound
/// (Prometheus logs its `--web.listen-address` as given). Panics, naming `what`, when the child
/// ends first or nothing listens within `within`.
pub fn wait_listening(what: &str, child: &mut impl Process, within: Duration) -> Vec<SocketAddr> {
    let deadline = Instant::now() + within;
    loop {
        let addrs = listening(child.pid());
        if !addrs.is_empty() {
            return addrs;
        }
        assert!(!child.has_exited(), "{what} ended before it listened");
        assert!(
            Instant::now() < deadline,
            "{what} did not listen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port nobody listened on a moment ago (bound on port 0, read back, released).
///
/// Only for a program that must be told its port before it starts and can neither bind port 0
/// nor report what it bound: rotel (the OTLP receiver) panics on port 0. Releasing the port
/// leaves a window in which another process can take it, so this is private to
/// [`start_on_free_ports`], which checks the program itself listens and retries on fresh ports.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// How often [`start_on_free_ports`] tries before giving up.
const START_ATTEMPTS: u32 = 5;

/// Starts an external program that must be told `n` loopback ports up front (see
/// [`free_port`]): picks `n` distinct free ports, calls `spawn` with them, and waits until the
/// started process itself listens on every one (its own sockets, per [`listening`], so a port
/// another process took in the meantime is not mistaken for it). If the program exits (a bind
/// failure: "address already in use") or does not listen within `within`, it is stopped and
/// started again on fresh ports, up to [`START_ATTEMPTS`] times.
pub fn start_on_free_ports<P: Process>(
    what: &str,
    n: usize,
    within: Duration,
    mut spawn: impl FnMut(&[u16]) -> P,
) -> (P, Vec<u16>) {
    let mut last = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let mut ports: Vec<u16> = Vec::with_capacity(n);
        while ports.len() < n {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut child = spawn(&ports);
        let deadline = Instant::now() + within;
        loop {
            let bound: HashSet<u16> = listening(child.pid()).iter().map(|a| a.port()).collect();
            if ports.iter().all(|p| bound.contains(p)) {
                return (child, ports);
            }
            if child.has_exited() {
                last = format!("{what} exited before listening on {ports:?}");
                break;
            }
            if Instant::now() > deadline {
                last = format!("{what} did not listen on {ports:?} within {within:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.stop();
        eprintln!("attempt {attempt}/{START_ATTEMPTS}: {last}; starting it on other ports");
    }
    panic!("{last} ({START_ATTEMPTS} attempts; see its output)");
}

/// A loopback port that refuses connections (ECONNREFUSED) for as long as the returned socket
/// lives: the socket is bound but never listens, so no process can take the port meanwhile.
pub fn refusing_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("binding 127.0.0.1:0");
    let port = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("its address")
        .port();
    (s, port)
}

/// Waits until a line of the file at `path` (a child's redirected output) contains `marker`,
/// and returns what follows the marker on that line: `wait_for_line(log, "live metrics on
/// http://", ..)` gives `ADDR/metrics`. Panics after `within`, with the file's end.
pub fn wait_for_line(path: &Path, marker: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // only complete lines: the writer may be in the middle of this one
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        if let Some(rest) = complete
            .lines()
            .find_map(|l| l.split_once(marker).map(|(_, r)| r))
        {
            return rest.trim_end().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {marker:?} in {} within {within:?}:\n{}",
            path.display(),
            &text[text.len().saturating_sub(3000)..]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
