//! Which addresses outbound calls may reach when private addresses are denied
//! (`outbound_deny_private` for `http` steps, `subscriptions_deny_private` for
//! event webhooks), and the DNS resolver that enforces it on the addresses
//! actually connected to: a name is resolved once, its non-public addresses are
//! dropped, and the connection is made to what is left — nothing is looked up
//! again between the check and the connect, so a name that changes its answer
//! (DNS rebinding) cannot slip an internal address in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address of the public internet. IPv6 forms that carry an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(v4: &Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local() // 169.254/16, the cloud metadata address among them
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99/24 6to4 relays
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || o[0] >= 240) // reserved
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn public_v6(v6: &Ipv6Addr) -> bool {
    let s = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return public_v4(&v4);
    }
    match s {
        // ::/96: unspecified, loopback and the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => public_v4(&embedded_v4(hi, lo)),
        // Local-use NAT64 (64:ff9b:1::/48) translates into a private network.
        [0x64, 0xff9b, 1, ..] => false,
        // 6to4 (2002::/16) carries the IPv4 address of its relay end.
        [0x2002, hi, lo, ..] => public_v4(&embedded_v4(hi, lo)),
        // 2001::/23: protocol assignments, Teredo (2001::/32) among them.
        [0x2001, b, ..] if b < 0x200 => false,
        // Documentation.
        [0x2001, 0xdb8, ..] => false,
        // Global unicast is 2000::/3; everything else (unique local fc00::/7,
        // link-local fe80::/10, site-local fec0::/10, multicast ff00::/8,
        // discard 100::/64, unassigned space) is not public.
        [first, ..] => (first & 0xe000) == 0x2000,
    }
}

/// A client builder whose names resolve through [`PolicyResolver`]. Literal
/// addresses in URLs are not resolved: check them first (`OutboundPolicy::check`).
pub fn client_builder(deny_private: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(std::sync::Arc::new(PolicyResolver { deny_private }))
}

/// Resolves names and, when `deny_private`, keeps only public addresses.
pub struct PolicyResolver {
    pub deny_private: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let deny_private = self.deny_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !deny_private || is_public(&a.ip()))
                .collect();
            if addrs.is_empty() {
                let why = if deny_private {
                    format!(
                        "`{host}` resolves only to private addresses, and calls to private addresses are denied"
                    )
                } else {
                    format!("`{host}` has no address")
                };
                return Err(why.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_in_every_spelling() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "::7f00:1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(&ip), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public(&ip), "{public}");
        }
    }
}
