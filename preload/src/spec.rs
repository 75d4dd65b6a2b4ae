//! `HAWKEY_ADOPT` and `HAWKEY_READY_PROBE` read into fixed tables, and the
//! one rule that decides whether a `bind(2)` address is adopted. Pure and
//! allocation-free: the tables live in static memory that a `fork(2)`
//! copies as it is.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The most `HAWKEY_ADOPT` entries read; more are ignored.
pub(crate) const MAX_ADOPT: usize = 32;
/// The most `HAWKEY_READY_PROBE` inodes read; more are ignored.
pub(crate) const MAX_PROBE: usize = 64;

/// Which addresses of a port an entry adopts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// `*:PORT`: any address of the port.
    Any,
    /// `0.0.0.0:PORT` or `[::]:PORT`: a wildcard bind of either family.
    Wildcard,
    /// `A.B.C.D:PORT`: that address (or its v4-mapped IPv6 form).
    V4(Ipv4Addr),
    /// `[V6ADDR]:PORT`: that address.
    V6(Ipv6Addr),
}

/// One `FD=SPEC` entry of `HAWKEY_ADOPT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The inherited listener's fd.
    pub(crate) fd: i32,
    pub(crate) host: Host,
    pub(crate) port: u16,
}

impl Spec {
    pub(crate) const EMPTY: Spec = Spec {
        fd: -1,
        host: Host::Any,
        port: 0,
    };

    /// Whether a bind of `addr` is meant for this entry's listener.
    pub(crate) fn matches(&self, addr: &SocketAddr) -> bool {
        if addr.port() != self.port || self.port == 0 {
            return false;
        }
        match (self.host, addr) {
            (Host::Any, _) => true,
            (Host::Wildcard, a) => a.ip().is_unspecified(),
            (Host::V4(want), SocketAddr::V4(a)) => *a.ip() == want,
            (Host::V4(want), SocketAddr::V6(a)) => *a.ip() == want.to_ipv6_mapped(),
            (Host::V6(want), SocketAddr::V6(a)) => *a.ip() == want,
            (Host::V6(want), SocketAddr::V4(a)) => a.ip().to_ipv6_mapped() == want,
        }
    }
}

/// One `SPEC`: `*:PORT`, `0.0.0.0:PORT`, `[::]:PORT`, `A.B.C.D:PORT` or
/// `[V6ADDR]:PORT`; the port 1..65535.
pub(crate) fn parse_spec(fd: i32, text: &str) -> Option<Spec> {
    let (host, port) = if let Some(port) = text.strip_prefix("*:") {
        (Host::Any, port.parse::<u16>().ok()?)
    } else {
        let addr: SocketAddr = text.parse().ok()?;
        let host = match addr {
            a if a.ip().is_unspecified() => Host::Wildcard,
            SocketAddr::V4(a) => Host::V4(*a.ip()),
            SocketAddr::V6(a) => Host::V6(*a.ip()),
        };
        (host, addr.port())
    };
    (port != 0 && fd >= 0).then_some(Spec { fd, host, port })
}

/// Reads `HAWKEY_ADOPT` (`FD=SPEC,FD=SPEC`) into `out`; returns how many
/// entries it holds. A malformed entry is skipped: the library must never
/// make a program fail that would have run without it.
pub(crate) fn parse_adopt(text: &[u8], out: &mut [Spec]) -> usize {
    let mut n = 0;
    for entry in text.split(|b| *b == b',') {
        if n == out.len() {
            break;
        }
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        let Some((fd, spec)) = entry.split_once('=') else {
            continue;
        };
        let Ok(fd) = fd.trim().parse::<i32>() else {
            continue;
        };
        if let Some(spec) = parse_spec(fd, spec.trim()) {
            out[n] = spec;
            n += 1;
        }
    }
    n
}

/// Reads `HAWKEY_READY_PROBE` (comma-separated decimal inode numbers) into
/// `out`; returns how many it holds.
pub(crate) fn parse_probe(text: &[u8], out: &mut [u64]) -> usize {
    let mut n = 0;
    for item in text.split(|b| *b == b',') {
        if n == out.len() {
            break;
        }
        if let Some(ino) = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            out[n] = ino;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn spec(s: &str) -> Spec {
        parse_spec(3, s).unwrap()
    }

    #[test]
    fn a_bare_port_adopts_every_address_of_that_port_only() {
        let s = spec("*:3000");
        for a in ["0.0.0.0:3000", "127.0.0.1:3000", "[::]:3000", "[::1]:3000"] {
            assert!(s.matches(&addr(a)), "{a}");
        }
        assert!(!s.matches(&addr("0.0.0.0:3001")));
        assert!(!s.matches(&addr("[::]:0")));
    }

    #[test]
    fn either_wildcard_adopts_a_wildcard_bind_of_either_family() {
        for w in ["0.0.0.0:3000", "[::]:3000"] {
            let s = spec(w);
            assert_eq!(s.host, Host::Wildcard);
            assert!(s.matches(&addr("0.0.0.0:3000")), "{w}");
            // Node's listen(PORT): `::`, dual-stack.
            assert!(s.matches(&addr("[::]:3000")), "{w}");
            assert!(!s.matches(&addr("127.0.0.1:3000")), "{w}");
            assert!(!s.matches(&addr("[::1]:3000")), "{w}");
            assert!(!s.matches(&addr("[::]:3001")), "{w}");
        }
    }

    #[test]
    fn an_address_adopts_that_address_and_its_mapped_form_only() {
        let s = spec("127.0.0.1:3000");
        assert!(s.matches(&addr("127.0.0.1:3000")));
        assert!(s.matches(&addr("[::ffff:127.0.0.1]:3000")));
        assert!(!s.matches(&addr("0.0.0.0:3000")));
        assert!(!s.matches(&addr("127.0.0.2:3000")));
        let s = spec("[::1]:3000");
        assert!(s.matches(&addr("[::1]:3000")));
        assert!(!s.matches(&addr("127.0.0.1:3000")));
        assert!(!s.matches(&addr("[::]:3000")));
    }

    #[test]
    fn malformed_specs_are_refused() {
        for bad in [
            "",
            "3000",
            "*:",
            "*:0",
            "*:65536",
            "*:x",
            "0.0.0.0:0",
            "localhost:3000",
            "::1:3000",
            "[::1]",
            "1.2.3.4",
        ] {
            assert_eq!(parse_spec(3, bad), None, "{bad:?}");
        }
        assert_eq!(parse_spec(-1, "*:3000"), None);
    }

    #[test]
    fn the_adopt_list_keeps_good_entries_and_skips_bad_ones() {
        let mut out = [Spec::EMPTY; MAX_ADOPT];
        let n = parse_adopt(b"3=*:3000,x=*:1,4=[::]:8080,5=nonsense,6", &mut out);
        assert_eq!(n, 2);
        assert_eq!((out[0].fd, out[0].host, out[0].port), (3, Host::Any, 3000));
        assert_eq!(
            (out[1].fd, out[1].host, out[1].port),
            (4, Host::Wildcard, 8080)
        );
        let mut two = [Spec::EMPTY; 2];
        assert_eq!(parse_adopt(b"3=*:1,4=*:2,5=*:3", &mut two), 2);
        assert_eq!(parse_adopt(b"", &mut out), 0);
    }

    #[test]
    fn the_probe_list_reads_inodes() {
        let mut out = [0u64; MAX_PROBE];
        let n = parse_probe(b"12345,notanumber,678", &mut out);
        assert_eq!(&out[..n], &[12345, 678]);
        assert_eq!(parse_probe(b"", &mut out), 0);
    }
}
