//! Who a peer is: the identity rule.
//!
//! A peer is its host and its *listening* port. The host is taken from the socket (the
//! kernel's word), never from the header (the sender's word). Every address of this machine
//! (127.0.0.0/8, `::1`, and each interface address) names the same host, so a node reached
//! as 127.0.0.1 and as 192.168.1.5 is one peer, not two. See PROTOCOL.md, "Identity".

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// A map keyed by peers. These keys come from the network, so the hasher is seeded at
/// random per map (foldhash, as hashbrown's default): a sender cannot choose keys that
/// collide without knowing the seed. SipHash, std's default, resists that better but costs
/// several times more per lookup, and every message sent looks its peer up several times.
pub type PeerMap<V> = std::collections::HashMap<PeerKey, V, foldhash::fast::RandomState>;
/// A set of peers, hashed as [`PeerMap`].
pub type PeerSet = std::collections::HashSet<PeerKey, foldhash::fast::RandomState>;

/// The canonical identity of a peer: host (canonicalised) and listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerKey(pub SocketAddr);

/// Hashed as one or two words, not field by field: every message sent looks its peer up
/// in several maps ([`PeerMap`]). Equal keys hash alike (IPv6 flow labels, never part of
/// a peer's identity, are left out).
impl std::hash::Hash for PeerKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(a) => state
                .write_u64((4 << 48) | (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())),
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u64((6 << 56) | (u64::from(a.scope_id()) << 16) | u64::from(a.port()));
            }
        }
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The addresses of this machine, learnt once at start-up by the reactor.
#[derive(Debug, Clone, Default)]
pub struct LocalAddrs {
    addrs: HashSet<IpAddr>,
}

/// Every address of this machine canonicalises to this one.
pub const LOCAL_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl LocalAddrs {
    pub fn new(addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        LocalAddrs {
            addrs: addrs.into_iter().map(unmap).collect(),
        }
    }

    /// Is `ip` an address of this machine?
    pub fn is_local(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        ip.is_loopback() || ip.is_unspecified() || self.addrs.contains(&ip)
    }

    /// The canonical form of a host address: [`LOCAL_HOST`] for any address of this
    /// machine, IPv4 for IPv4-mapped IPv6, otherwise unchanged.
    pub fn canonical(&self, ip: IpAddr) -> IpAddr {
        if self.is_local(ip) {
            LOCAL_HOST
        } else {
            unmap(ip)
        }
    }

    /// The key of the peer listening on `port` at `ip`.
    pub fn key(&self, ip: IpAddr, port: u16) -> PeerKey {
        PeerKey(SocketAddr::new(self.canonical(ip), port))
    }
}

/// The address to reach a peer that wrote to us from `source` and listens on `port`: the
/// source's host, with its scope id (an IPv6 link-local address names a host only
/// together with the interface it is reached through; the key leaves it out).
pub fn dial_addr(source: SocketAddr, port: u16) -> SocketAddr {
    match source {
        SocketAddr::V6(v6) => SocketAddrV6::new(*v6.ip(), port, 0, v6.scope_id()).into(),
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V4(*v4.ip()), port),
    }
}

/// What per-source limits count as one source: an IPv4 address, or an IPv6 /64 (one site's
/// allocation: a host there can take any address in it). Used by the reactor's inbound
/// limits and by the peer table's per-host cap.
pub fn limit_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        // Every host on a link shares fe80::/64: a link-local source counts on its own.
        IpAddr::V6(v6) if v6.is_unicast_link_local() => ip,
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(net))
        }
        other => other,
    }
}

/// A [`limit_bucket`] as logged: `10.1.2.3`, or `2001:db8:1:2::/64`.
pub fn bucket_text(bucket: IpAddr) -> String {
    match bucket {
        IpAddr::V6(v6) if !v6.is_loopback() && !v6.is_unicast_link_local() => format!("{v6}/64"),
        other => other.to_string(),
    }
}

/// `::ffff:a.b.c.d` is the IPv4 host `a.b.c.d`.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_of_this_machine_is_one_host() {
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        let local = LocalAddrs::new([lan]);
        let k = local.key(LOCAL_HOST, 9000);
        for ip in [
            "127.0.0.1",
            "127.0.1.1",
            "192.168.1.5",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(local.key(ip.parse().unwrap(), 9000), k, "{ip}");
        }
        assert_ne!(local.key(LOCAL_HOST, 9001), k);
    }

    #[test]
    fn per_source_limits_count_ipv4_hosts_and_ipv6_slash_64s() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(limit_bucket(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(limit_bucket(ip("::1")), ip("::1"));
        let a = limit_bucket(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(limit_bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), a);
        assert_ne!(limit_bucket(ip("2001:db8:1:3::1")), a);
        assert_eq!(bucket_text(a), "2001:db8:1:2::/64");
        assert_eq!(bucket_text(ip("10.1.2.3")), "10.1.2.3");
        // Link-local: every host on the link is in fe80::/64, so each address counts alone.
        let ll = limit_bucket(ip("fe80::2"));
        assert_eq!(ll, ip("fe80::2"));
        assert_ne!(limit_bucket(ip("fe80::3")), ll);
        assert_eq!(bucket_text(ll), "fe80::2");
    }

    #[test]
    fn a_link_local_peer_is_dialled_through_the_interface_it_came_from() {
        let source: SocketAddr = "[fe80::7%3]:51000".parse().unwrap();
        let dial = dial_addr(source, 9000);
        assert_eq!(dial, "[fe80::7%3]:9000".parse::<SocketAddr>().unwrap());
        // One host whatever the interface: the key has no scope.
        let local = LocalAddrs::new([]);
        assert_eq!(
            local.key(dial.ip(), 9000),
            local.key("fe80::7".parse().unwrap(), 9000)
        );
        let v4: SocketAddr = "10.0.0.7:51000".parse().unwrap();
        assert_eq!(
            dial_addr(v4, 9000),
            "10.0.0.7:9000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn other_hosts_keep_their_address() {
        let local = LocalAddrs::new([]);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(local.canonical(ip), ip);
        assert_eq!(local.canonical("::ffff:10.0.0.7".parse().unwrap()), ip);
        assert!(!local.is_local(ip));
    }
}
