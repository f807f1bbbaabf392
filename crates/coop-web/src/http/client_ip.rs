//! The client's address, for per-address rate limits. It is the TCP peer,
//! unless the peer is one of our own proxies (COOP_TRUSTED_PROXIES): then it
//! is the address that proxy saw, from `X-Forwarded-For`. Anyone else's
//! `X-Forwarded-For` is ignored, since a client can write whatever it likes
//! there to get a fresh budget with each request.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

/// COOP_TRUSTED_PROXIES: addresses and networks (`10.0.0.0/8`) of proxies
/// whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (item, None),
            };
            let problem = || {
                format!(
                    "COOP_TRUSTED_PROXIES expects addresses or networks separated by commas \
                     (e.g. 127.0.0.1,10.0.0.0/8), got {item:?}"
                )
            };
            let address: IpAddr = address.parse().map_err(|_| problem())?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(problem)?,
                None => max,
            };
            networks.push((address, prefix));
        }
        Ok(Self(networks))
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0
            .iter()
            .any(|(network, prefix)| same_prefix(canonical(*network), address, *prefix))
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not one of ours (each proxy
/// appends the address it received the request from).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(address) = hop.parse::<IpAddr>() else {
            // Garbage from further out: trust no further.
            break;
        };
        client = canonical(address);
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

/// What a per-address budget is keyed on: the address, or for IPv6 its /64
/// (one subscriber usually holds a whole /64 and could rotate through it).
pub fn budget_key(address: IpAddr) -> String {
    match canonical(address) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(network: IpAddr, address: IpAddr, prefix: u8) -> bool {
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let spoofed = forwarded("1.2.3.4");
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_address(stranger, &spoofed, &trusted), stranger);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_address(
                proxy,
                &forwarded("1.2.3.4, 203.0.113.7, 10.1.2.3"),
                &trusted
            ),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "the client's own entry (1.2.3.4) could be forged; our proxies' cannot"
        );
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(
            client_address(proxy, &forwarded("junk, 10.0.0.1"), &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let nobody = TrustedProxies::default();
        assert_eq!(client_address(proxy, &spoofed, &nobody), proxy);
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted = TrustedProxies::parse("192.168.0.0/16,::1").unwrap();
        assert!(trusted.contains("192.168.4.5".parse().unwrap()));
        assert!(!trusted.contains("192.169.0.1".parse().unwrap()));
        assert!(trusted.contains("::1".parse().unwrap()));
        assert!(trusted.contains("::ffff:192.168.1.1".parse().unwrap()));
        for bad in ["localhost", "10.0.0.0/33", "10.0.0.0/x"] {
            let err = TrustedProxies::parse(bad).unwrap_err();
            assert!(err.contains("COOP_TRUSTED_PROXIES"), "{err}");
        }
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        assert_eq!(
            budget_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            budget_key("2001:db8:1:2:ffff::1".parse().unwrap())
        );
        assert_eq!(budget_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
