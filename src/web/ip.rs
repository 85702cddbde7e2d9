//! The client's IP address, with forwarding headers honoured only from trusted proxies.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;

use crate::error::Error;

/// An IP network, `"10.0.0.0/8"`, `"fd00::/8"`, or a single address (`"127.0.0.1"`).
///
/// ```
/// use sea_orm_audit::web::Cidr;
/// let net: Cidr = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.1.2.3".parse()?));
/// assert!(!net.contains("11.0.0.1".parse()?));
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::BadNetwork {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| invalid("not an IP address"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| invalid(&format!("the prefix length must be 0 to {max}")))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Most forwarding hops looked at; a longer chain is cut from the left (the untrusted end).
const MAX_HOPS: usize = 64;

/// The client address of a request that came from `peer` (the socket address).
///
/// Unless `peer` is a trusted proxy, it is the answer and forwarding headers are ignored: any
/// client can send `X-Forwarded-For`. From a trusted proxy, the forwarding chain (`Forwarded`
/// if present, else `X-Forwarded-For`) is walked from the right, skipping trusted proxies; the
/// first untrusted address is the client. If every hop is trusted, the leftmost is. A hop that
/// cannot be parsed (`unknown`, an obfuscated name) stops the walk at the last address that
/// could be verified.
///
/// ```
/// use sea_orm_audit::web::client_ip;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse()?);
/// let proxy = "10.0.0.2".parse()?;
/// let trusted = ["10.0.0.0/8".parse()?];
/// // From the trusted proxy: the client it saw, not what the client claimed before it.
/// assert_eq!(client_ip(&headers, Some(proxy), &trusted), Some("203.0.113.9".parse()?));
/// // From anyone else: the socket address.
/// let peer = "198.51.100.7".parse()?;
/// assert_eq!(client_ip(&headers, Some(peer), &trusted), Some(peer));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop else { break };
        client = *ip;
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

/// The forwarding chain, oldest (client side) first; `None` for hops that are not addresses.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    let forwarded: Vec<_> = headers.get_all(http::header::FORWARDED).iter().collect();
    if !forwarded.is_empty() {
        for value in forwarded {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for element in value.split(',') {
                let node = element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then_some(value)
                });
                hops.push(node.and_then(parse_node));
            }
        }
    } else {
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            hops.extend(value.split(',').map(parse_node));
        }
    }
    if hops.len() > MAX_HOPS {
        hops.drain(..hops.len() - MAX_HOPS);
    }
    hops
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse::<IpAddr>().ok();
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // IPv4 with a port.
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn networks() {
        let v4: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(v4.contains(ip("192.168.255.1")));
        assert!(v4.contains(ip("::ffff:192.168.1.1")));
        assert!(!v4.contains(ip("192.169.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")));
        assert_eq!(one.to_string(), "::1/128");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10/8",
            "::/129",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(&h, Some(ip("9.9.9.9")), &trusted),
            Some(ip("9.9.9.9"))
        );
        assert_eq!(client_ip(&h, Some(ip("9.9.9.9")), &[]), Some(ip("9.9.9.9")));
        assert_eq!(client_ip(&h, None, &trusted), None);
    }

    #[test]
    fn chain_is_walked_from_the_right() {
        let trusted = [
            "10.0.0.0/8".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ];
        let proxy = Some(ip("10.0.0.1"));
        // The client claims 6.6.6.6; the first proxy saw 5.5.5.5; an inner proxy 192.168.1.1.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 192.168.1.1")]);
        assert_eq!(client_ip(&h, proxy, &trusted), Some(ip("5.5.5.5")));
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "5.5.5.5:1234"),
        ]);
        assert_eq!(client_ip(&h, proxy, &trusted), Some(ip("5.5.5.5")));
        // All trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "192.168.0.9, 10.1.1.1")]);
        assert_eq!(client_ip(&h, proxy, &trusted), Some(ip("192.168.0.9")));
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_ip(&HeaderMap::new(), proxy, &trusted), proxy);
        // Garbage stops the walk at the last verified hop.
        let h = headers(&[("x-forwarded-for", "5.5.5.5, nonsense, 192.168.3.3")]);
        assert_eq!(client_ip(&h, proxy, &trusted), Some(ip("192.168.3.3")));
    }

    #[test]
    fn forwarded_header_wins_and_parses_rfc_7239() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let proxy = Some(ip("10.0.0.1"));
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                "for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.2.2.2",
            ),
        ]);
        assert_eq!(
            client_ip(&h, proxy, &trusted),
            Some(ip("2001:db8:cafe::17"))
        );
        let h = headers(&[("forwarded", "for=unknown;proto=http, for=10.3.3.3")]);
        assert_eq!(client_ip(&h, proxy, &trusted), Some(ip("10.3.3.3")));
    }
}
