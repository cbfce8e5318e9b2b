//! Addresses as the user types them (the menu, `/send`, `--peer`): `IP:PORT`, `[v6]:PORT`,
//! `localhost:PORT`, and IPv6 addresses with a zone: `fe80::1%eth0`, `[fe80::1%eth0]:9000`.
//!
//! A link-local address (`fe80::/10`) names a host only together with the interface it is
//! reached through, its *zone*: typed as an interface name (`%eth0`) or its index (`%2`),
//! kept as the socket address's scope id. The only step here that is not pure is looking an
//! interface name up in the OS's list of interfaces.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};

use crate::os;

/// A host as typed: its IP and, for IPv6, the zone's interface index (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub ip: IpAddr,
    pub scope_id: u32,
}

impl Host {
    /// This host's `port`.
    pub fn with_port(self, port: u16) -> SocketAddr {
        match self.ip {
            IpAddr::V6(v6) => SocketAddrV6::new(v6, port, 0, self.scope_id).into(),
            v4 => SocketAddr::new(v4, port),
        }
    }
}

/// Why a typed host is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    NotAnIp,
    /// A `%zone` after an IPv4 address.
    ZoneOnIpv4,
    /// Nothing after the `%`.
    EmptyZone,
    /// No interface has that name.
    NoSuchInterface(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::NotAnIp => f.write_str("not an IP address"),
            HostError::ZoneOnIpv4 => f.write_str("only an IPv6 address takes a %zone"),
            HostError::EmptyZone => {
                f.write_str("nothing after the %: name the interface, e.g. %eth0, or its index")
            }
            HostError::NoSuchInterface(name) => write!(
                f,
                "no network interface is called {name:?} (the zone after %): see `ip link`"
            ),
        }
    }
}

/// `1.2.3.4`, `::1`, `[::1]`, `localhost`, `fe80::1%eth0`, `[fe80::1%2]`.
pub fn parse_host(s: &str) -> Result<Host, HostError> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(Host {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            scope_id: 0,
        });
    }
    let s = s.trim_start_matches('[').trim_end_matches(']');
    let (ip, zone) = match s.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (s, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| HostError::NotAnIp)?;
    let scope_id = match (zone, ip) {
        (None, _) => 0,
        (Some(_), IpAddr::V4(_)) => return Err(HostError::ZoneOnIpv4),
        (Some(""), _) => return Err(HostError::EmptyZone),
        (Some(zone), _) => match zone.parse::<u32>() {
            Ok(index) => index,
            Err(_) => os::interface_index(zone)
                .ok_or_else(|| HostError::NoSuchInterface(zone.to_owned()))?,
        },
    };
    Ok(Host { ip, scope_id })
}

/// A port as typed: 1-65535.
pub fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// `IP:PORT`, `[v6]:PORT`, `[v6%zone]:PORT` or `localhost:PORT`; the error says what is
/// wrong, naming `s`.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(addr) = dotted_v4_with_port(s.as_bytes()) {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not IP:PORT"));
    };
    let Some(port) = parse_port(port) else {
        return Err(format!(
            "{s:?}: port {port:?} is not a number from 1 to 65535"
        ));
    };
    if host.contains(':') && !host.starts_with('[') {
        // A bare IPv6 address needs brackets to carry a port.
        return Err(format!(
            "{s:?}: an IPv6 address takes brackets: [{host}]:{port}"
        ));
    }
    match parse_host(host) {
        Ok(h) => Ok(h.with_port(port)),
        Err(HostError::NotAnIp) => Err(format!(
            "{s:?}: {host:?} is not an IP address (host names are not looked up, except \
             localhost): use IP:PORT"
        )),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// `a.b.c.d:port` in plain digits, the address of nearly every `/send` line, read in
/// one pass: `None` for anything else (or anything doubtful), which the general parser
/// then reads. Accepts exactly what the general parser accepts and gives the same
/// address (`tests::dotted_v4_fast_path_agrees`).
fn dotted_v4_with_port(s: &[u8]) -> Option<SocketAddr> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        let start = at;
        let mut value = 0u32;
        while at < s.len() && s[at].is_ascii_digit() && at - start < 3 {
            value = value * 10 + u32::from(s[at] - b'0');
            at += 1;
        }
        let digits = at - start;
        // No digits, a leading zero (the general parser refuses "01"), or over 255.
        if digits == 0 || (digits > 1 && s[start] == b'0') || value > 255 {
            return None;
        }
        *octet = value as u8;
        let sep = if i < 3 { b'.' } else { b':' };
        if s.get(at) != Some(&sep) {
            return None;
        }
        at += 1;
    }
    let port = &s[at..];
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = port.iter().fold(0u32, |p, &d| p * 10 + u32::from(d - b'0'));
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    Some(SocketAddr::from((Ipv4Addr::from(octets), port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string the fast path takes, the general parser takes too, with the same
    /// address; and what the general parser takes in dotted form, the fast path does.
    #[test]
    fn dotted_v4_fast_path_agrees() {
        let parts = [
            "0", "1", "01", "9", "10", "99", "100", "255", "256", "999", "0000", "1234", "", "+1",
            "a",
        ];
        let ports = [
            "0", "1", "80", "0080", "9000", "65535", "65536", "99999", "123456", "", "+80", "8a",
        ];
        let mut checked = 0;
        for a in parts {
            for b in ["0", "01", "255", "256"] {
                for d in parts {
                    for port in ports {
                        for sep in [":", ".", "::"] {
                            let s = format!("{a}.{b}.7.{d}{sep}{port}");
                            let general = {
                                let (host, port) = s.rsplit_once(':').unwrap_or((&s, ""));
                                parse_port(port)
                                    .and_then(|p| parse_host(host).ok().map(|h| h.with_port(p)))
                            };
                            let fast = dotted_v4_with_port(s.as_bytes());
                            if let Some(addr) = fast {
                                assert_eq!(Some(addr), general, "{s}");
                                checked += 1;
                            } else if !port.starts_with('+') {
                                assert_eq!(general, None, "{s}: the fast path missed it");
                            }
                            assert_eq!(parse_socket_addr(&s).ok(), general, "{s}");
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 7 * 2 * 7 * 5, "strings that took the fast path");
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_addresses() {
        assert_eq!(parse_socket_addr("10.0.0.1:9000"), Ok(sa("10.0.0.1:9000")));
        assert_eq!(parse_socket_addr("[::1]:9"), Ok(sa("[::1]:9")));
        assert_eq!(parse_socket_addr("localhost:9"), Ok(sa("127.0.0.1:9")));
        assert_eq!(parse_socket_addr("LocalHost:9"), Ok(sa("127.0.0.1:9")));
        let h = parse_host("2001:db8::1").unwrap();
        assert_eq!((h.ip, h.scope_id), ("2001:db8::1".parse().unwrap(), 0));
        assert_eq!(
            parse_host("[::1]").unwrap().ip,
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_zone_is_an_interface_name_or_index() {
        let lo = os::interface_index("lo").expect("every Linux machine has lo");
        for typed in ["[fe80::1%lo]:9000", "fe80::1%lo"] {
            let addr = match parse_socket_addr(typed) {
                Ok(a) => a,
                Err(_) => parse_host(typed).unwrap().with_port(9000),
            };
            let SocketAddr::V6(v6) = addr else {
                panic!("{typed}: {addr}");
            };
            assert_eq!(v6.scope_id(), lo, "{typed}");
            assert_eq!(*v6.ip(), "fe80::1".parse::<std::net::Ipv6Addr>().unwrap());
            assert_eq!(v6.port(), 9000);
        }
        // A number is the index itself; shown the way std writes it.
        let a = parse_socket_addr("[fe80::1%7]:9000").unwrap();
        assert_eq!(a, sa("[fe80::1%7]:9000"));
        assert_eq!(a.to_string(), "[fe80::1%7]:9000");
        assert_eq!(parse_host("fe80::1%7").unwrap().scope_id, 7);
    }

    #[test]
    fn a_bad_zone_says_what_is_wrong() {
        let e = parse_socket_addr("[fe80::1%nosuchif0]:9000").unwrap_err();
        assert!(
            e.contains("no network interface is called \"nosuchif0\""),
            "{e}"
        );
        assert_eq!(
            parse_host("fe80::1%nosuchif0"),
            Err(HostError::NoSuchInterface("nosuchif0".into()))
        );
        assert_eq!(parse_host("fe80::1%"), Err(HostError::EmptyZone));
        assert_eq!(parse_host("10.0.0.1%lo"), Err(HostError::ZoneOnIpv4));
        let e = parse_socket_addr("10.0.0.1%lo:9000").unwrap_err();
        assert!(e.contains("only an IPv6 address takes a %zone"), "{e}");
        assert_eq!(
            parse_host("fe80::1%lo%lo"),
            Err(HostError::NoSuchInterface("lo%lo".into()))
        );
    }

    #[test]
    fn a_bad_address_says_what_is_wrong_with_it() {
        let err = |w: &str| parse_socket_addr(w).unwrap_err();
        assert!(err("nosuchhost.invalid:80").contains("\"nosuchhost.invalid\" is not an IP"));
        assert!(err("nosuchhost.invalid:80").contains("not looked up"));
        assert!(err("10.0.0.1:0").contains("port \"0\" is not a number from 1 to 65535"));
        assert!(err("10.0.0.1:65536").contains("port \"65536\""));
        assert!(err("10.0.0.1:abc").contains("port \"abc\""));
        assert!(err("::1:9000").contains("[::1]:9000"));
        assert!(err("fe80::1%lo:9000").contains("[fe80::1%lo]:9000"));
        assert!(err("10.0.0.1").contains("is not IP:PORT"));
    }
}
