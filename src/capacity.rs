//! Connection-capacity arithmetic for socket-heavy workloads (WebSocket): the open-file limit
//! of this process, the ephemeral ports of one source address, and what to do past either.
//!
//! Facts this encodes (DESIGN §7): one source address has ~28k ephemeral ports (32768–60999),
//! so more loopback connections need several source addresses (127.0.0.1, 127.0.0.2, ...); a
//! process may open at most its hard `RLIMIT_NOFILE` files (20,000 on the reference machine, not
//! raisable), so past that the load must be spread over processes (`--local-workers`).
//!
//! Binding a source address with port 0 is cheap only while that address has free ports in
//! the half of the range Linux searches first for `bind()` (the odd ports, ~14,100): measured
//! here, 4–6 µs per bind up to 12,000 sockets on one address, 30 µs at 14,000 and ~3 ms past
//! it, when every bind scans the whole odd half. At 25,000 connections per address a
//! 100,000-connection ramp spent its CPU in that scan (handshakes 88 s late, 17 % failed), so
//! addresses are planned at [`CONNECTIONS_PER_SOURCE_IP`], well inside the odd half.

use std::net::{IpAddr, Ipv4Addr};

/// Ephemeral ports one source address gives on Linux by default (32768–60999 is 28,232), rounded
/// down to leave room for other sockets.
pub(crate) const PORTS_PER_SOURCE_IP: u64 = 28_000;

/// Connections planned per bound source address: below the ~14,100 odd ports `bind()` with
/// port 0 searches first, so binding stays a few microseconds (see the module docs).
pub(crate) const CONNECTIONS_PER_SOURCE_IP: u64 = 10_000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the soft limit now in force.
pub(crate) fn raise_nofile_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The `(soft, hard)` open-file limits of this process.
pub(crate) fn nofile_limits() -> std::io::Result<(u64, u64)> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
}

/// File descriptors kept free for everything that is not a load connection: stdio, the results
/// files, the `/metrics` listener and OTLP exporter, tokio's internals, DNS. 64 plus 1 %.
pub(crate) fn fd_headroom(fd_limit: u64) -> u64 {
    64 + fd_limit / 100
}

/// How many connections fit in `fd_limit` open files, each costing `fds_per_connection`
/// (1 for a client socket; 2 when the built-in target serves the same connections in-process).
pub(crate) fn connections_for_fd_limit(fd_limit: u64, fds_per_connection: u64) -> u64 {
    fd_limit.saturating_sub(fd_headroom(fd_limit)) / fds_per_connection.max(1)
}

/// Connections this process can hold: raises the soft fd limit to the hard one first, then
/// subtracts [`fd_headroom`]. 20,000 files give 19,736 connections.
pub(crate) fn max_connections_per_process() -> u64 {
    let limit = match raise_nofile_limit() {
        Ok(soft) => soft,
        Err(_) => nofile_limits().map(|(soft, _)| soft).unwrap_or(1024),
    };
    connections_for_fd_limit(limit, 1)
}

/// Source addresses for `connections` loopback connections at `per_ip` ports each: empty when
/// one address is enough (then don't bind at all, which also works for non-loopback targets),
/// else 127.0.0.1, 127.0.0.2, ... as many as needed (all of 127.0.0.0/8 is local on Linux).
pub(crate) fn plan_source_ips(connections: u64, per_ip: u64) -> Vec<IpAddr> {
    let per_ip = per_ip.max(1);
    let n = connections.div_ceil(per_ip);
    if n <= 1 {
        return Vec::new();
    }
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 1));
    let last = u32::from(Ipv4Addr::new(127, 255, 255, 254));
    let n = n.min(u64::from(last - first) + 1) as u32;
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
        .collect()
}

/// Local worker processes needed for `peak` connections at `per_process` each.
pub(crate) fn workers_needed(peak: u64, per_process: u64) -> u64 {
    peak.div_ceil(per_process.max(1)).max(1)
}

/// The note to print when a planned peak does not fit in one process, naming `--local-workers`.
/// None when it fits.
pub(crate) fn fd_limit_note(peak: u64, per_process: u64) -> Option<String> {
    if peak <= per_process {
        return None;
    }
    let workers = workers_needed(peak, per_process);
    Some(format!(
        "peak of {peak} connections exceeds what one process can open (~{per_process} \
         connections within its open-file limit); spread the load over {workers} processes \
         with --local-workers {workers}"
    ))
}

/// What a planned peak of connections needs on this machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CapacityPlan {
    /// Source addresses to bind, computed from the TOTAL peak: ephemeral ports are per address
    /// system-wide, so local workers must share this whole list (each binding round-robin over
    /// all of it), not plan their own from their share of the load.
    pub source_ips: Vec<IpAddr>,
    /// Connections one process can hold.
    pub per_process: u64,
    /// Processes needed (1 = this one is enough).
    pub workers: u64,
    /// Lines for the run's notes and console (empty when nothing special is needed).
    pub notes: Vec<String>,
}

/// Plans `peak` connections to a target: source addresses only when the target is loopback
/// (binding 127.0.0.x cannot reach anything else), workers from the fd limit.
pub(crate) fn capacity_plan(peak: u64, loopback_target: bool, per_process: u64) -> CapacityPlan {
    let mut notes = Vec::new();
    let source_ips = if loopback_target {
        plan_source_ips(peak, CONNECTIONS_PER_SOURCE_IP)
    } else {
        Vec::new()
    };
    if !source_ips.is_empty() {
        notes.push(format!(
            "{peak} connections are more than one source address serves cheaply \
             ({CONNECTIONS_PER_SOURCE_IP} of its ~{PORTS_PER_SOURCE_IP} ephemeral ports); binding \
             {} loopback source addresses ({}..{})",
            source_ips.len(),
            source_ips[0],
            source_ips[source_ips.len() - 1]
        ));
    } else if !loopback_target && peak > PORTS_PER_SOURCE_IP {
        notes.push(format!(
            "{peak} connections to one non-loopback target may exhaust the ~{PORTS_PER_SOURCE_IP} \
             ephemeral ports of this host's address; give --source-ips or spread over hosts"
        ));
    }
    notes.extend(fd_limit_note(peak, per_process));
    CapacityPlan {
        source_ips,
        per_process,
        workers: workers_needed(peak, per_process),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_enough_below_its_ports() {
        assert!(plan_source_ips(0, PORTS_PER_SOURCE_IP).is_empty());
        assert!(plan_source_ips(28_000, PORTS_PER_SOURCE_IP).is_empty());
    }

    #[test]
    fn more_connections_take_more_loopback_addresses() {
        let ips = plan_source_ips(28_001, PORTS_PER_SOURCE_IP);
        assert_eq!(
            ips,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "127.0.0.2".parse().unwrap()
            ]
        );
        let ips = plan_source_ips(100_000, PORTS_PER_SOURCE_IP);
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[3], "127.0.0.4".parse::<IpAddr>().unwrap());
        // crosses an octet boundary
        let ips = plan_source_ips(300, 1);
        assert_eq!(ips[255], "127.0.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(ips.len(), 300);
        // per_ip 0 is treated as 1, not a division by zero
        assert_eq!(plan_source_ips(3, 0).len(), 3);
    }

    #[test]
    fn fd_arithmetic_on_the_reference_machine() {
        assert_eq!(fd_headroom(20_000), 264);
        assert_eq!(connections_for_fd_limit(20_000, 1), 19_736);
        assert_eq!(connections_for_fd_limit(20_000, 2), 9_868);
        assert_eq!(connections_for_fd_limit(10, 1), 0);
        assert_eq!(workers_needed(100_000, 19_736), 6);
        assert_eq!(workers_needed(10, 19_736), 1);
    }

    #[test]
    fn note_names_local_workers_only_past_the_limit() {
        assert_eq!(fd_limit_note(19_736, 19_736), None);
        let note = fd_limit_note(100_000, 19_736).unwrap();
        assert!(note.contains("--local-workers 6"), "{note}");
        assert!(note.contains("100000"), "{note}");
    }

    #[test]
    fn capacity_plan_for_100k_loopback_connections() {
        let p = capacity_plan(100_000, true, 19_736);
        assert_eq!(p.source_ips.len(), 10);
        assert_eq!(p.source_ips[9], "127.0.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(p.workers, 6);
        assert_eq!(p.notes.len(), 2);
        assert!(p.notes[1].contains("--local-workers 6"));
        let small = capacity_plan(10_000, true, 19_736);
        assert!(small.source_ips.is_empty() && small.notes.is_empty());
        assert_eq!(capacity_plan(10_001, true, 19_736).source_ips.len(), 2);
        assert_eq!(small.workers, 1);
        let remote = capacity_plan(30_000, false, 19_736);
        assert!(remote.source_ips.is_empty());
        assert!(remote.notes[0].contains("--source-ips"));
    }

    #[test]
    fn raising_the_soft_limit_reaches_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let (now_soft, hard) = nofile_limits().unwrap();
        assert_eq!(soft, now_soft);
        // macOS caps below the hard limit; Linux raises to it
        if cfg!(target_os = "linux") {
            assert!(now_soft == hard || hard == u64::MAX);
        }
        assert!(max_connections_per_process() > 0);
    }
}
