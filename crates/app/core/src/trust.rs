//! Whom the data port believes: the client's address as the forwarding rules resolve it,
//! and whether that client is trusted with Sidelight's own headers (`[server.trust]`).
//!
//! The resolution follows Envoy's: with `forwarded_hops = N`, the peer and the last
//! `N - 1` entries of `X-Forwarded-For` are proxies and the entry before them is the
//! client; with `proxies`, entries are skipped from the right while they are listed
//! proxies. Anything unparseable in the chain stops the walk: a client cannot hide
//! behind garbage. Credentials are compared as SHA-256 digests in constant time.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TrustConfig;

/// The header a client sends a data-port credential in; removed before the model.
pub static CREDENTIAL: HeaderName = HeaderName::from_static("x-sidelight-credential");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The trust rules in force.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    sources: Vec<IpNet>,
    credentials: Vec<[u8; 32]>,
    hops: usize,
    proxies: Vec<IpNet>,
    /// Outcome reports per minute from one untrusted client.
    pub feedback_per_minute: u32,
}

/// Who sent a request, put on it by the outermost layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The client's address as the forwarding rules resolve it.
    pub address: IpAddr,
    /// Whether its Sidelight headers are honoured (a trusted source or credential).
    pub trusted: bool,
    /// Whether the connection's peer is a trusted proxy, whose forwarding headers are
    /// kept and extended rather than replaced.
    pub via_trusted_proxy: bool,
}

impl Trust {
    pub fn from_config(config: &TrustConfig) -> Self {
        Self {
            sources: config.sources.clone(),
            credentials: config
                .credentials_sha256
                .iter()
                .filter_map(|digest| hex::decode(digest).ok()?.try_into().ok())
                .collect(),
            hops: config.forwarded_hops,
            proxies: config.proxies.clone(),
            feedback_per_minute: config.feedback_per_minute,
        }
    }

    /// Resolves the caller of a request from its connection's peer and its headers, and
    /// removes the credential header (it is Sidelight's, never the model's).
    pub fn caller(&self, peer: IpAddr, headers: &mut HeaderMap) -> Caller {
        let via_trusted_proxy = self.hops > 0 || listed(&self.proxies, peer);
        // `None`: the chain was unreadable where the client should be. The client is then
        // unknown: never trusted by address, and limited under the peer's address.
        let resolved = if via_trusted_proxy {
            self.client_behind_proxies(peer, headers)
        } else {
            Some(peer)
        };
        let credential = headers.remove(&CREDENTIAL);
        let by_credential = credential.is_some_and(|value| {
            let digest: [u8; 32] = Sha256::digest(value.as_bytes().trim_ascii()).into();
            // Every digest is compared, so the time taken says nothing about which.
            self.credentials
                .iter()
                .fold(subtle::Choice::from(0), |found, known| {
                    found | known.ct_eq(&digest)
                })
                .into()
        });
        Caller {
            address: resolved.unwrap_or(peer),
            trusted: by_credential || resolved.is_some_and(|a| listed(&self.sources, a)),
            via_trusted_proxy,
        }
    }

    /// The client behind trusted proxies, from every `X-Forwarded-For` line in order
    /// (entries split on commas, each parsed on its own, so that one bad byte spoils
    /// only its own entry); `None` when the entry where the client should be is not an
    /// address.
    fn client_behind_proxies(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let mut chain: Vec<Option<IpAddr>> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(|entry| {
                std::str::from_utf8(entry.trim_ascii())
                    .ok()
                    .and_then(|e| e.parse().ok())
            })
            .collect();
        chain.push(Some(peer));
        if self.hops > 0 {
            // The peer is hop 1; the client is the entry `hops` places before it, or the
            // leftmost when the chain is shorter.
            let index = chain.len().saturating_sub(self.hops.saturating_add(1));
            return chain.get(index).copied().flatten();
        }
        for entry in chain.iter().rev() {
            let address = (*entry)?;
            if !listed(&self.proxies, address) {
                return Some(address);
            }
        }
        // Every hop a listed proxy: the leftmost is the best there is.
        chain.first().copied().flatten()
    }
}

/// `N` bytes from the OS generator as hex: what Sidelight hands out where a client must
/// not guess another's (explanation references, record id suffixes). Should the OS
/// generator fail, v4 UUIDs (122 random bits each) stand in.
pub fn unguessable_hex<const N: usize>() -> String {
    let mut bits = [0u8; N];
    if getrandom::fill(&mut bits).is_err() {
        for chunk in bits.chunks_mut(16) {
            chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..chunk.len()]);
        }
    }
    hex::encode(bits)
}

fn listed(networks: &[IpNet], address: IpAddr) -> bool {
    let address = match address {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|net| net.contains(&address))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

    fn trust(toml_text: &str) -> Trust {
        let config: TrustConfig = toml::from_str(toml_text).unwrap();
        Trust::from_config(&config)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(chain: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_str(chain).unwrap());
        headers
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards() {
        let rules = trust("sources = [\"10.0.0.0/8\"]");
        let caller = rules.caller(ip("203.0.113.9"), &mut forwarded("10.1.2.3"));
        assert_eq!(caller.address, ip("203.0.113.9"));
        assert!(!caller.trusted && !caller.via_trusted_proxy);
        assert!(rules.caller(ip("10.9.9.9"), &mut HeaderMap::new()).trusted);
        // A mapped IPv4 peer matches an IPv4 network.
        assert!(
            rules
                .caller(ip("::ffff:10.0.0.1"), &mut HeaderMap::new())
                .trusted
        );
    }

    #[test]
    fn with_hops_the_client_is_that_many_entries_from_the_right() {
        let rules = trust("forwarded_hops = 2");
        // client, edge proxy → second proxy (the peer).
        let caller = rules.caller(ip("10.0.0.2"), &mut forwarded("198.51.100.7, 10.0.0.1"));
        assert_eq!(caller.address, ip("198.51.100.7"));
        assert!(caller.via_trusted_proxy);
        // A client that prepends its own entries cannot choose its address.
        let spoofed = rules.caller(
            ip("10.0.0.2"),
            &mut forwarded("127.0.0.1, 198.51.100.7, 10.0.0.1"),
        );
        assert_eq!(spoofed.address, ip("198.51.100.7"));
        // Fewer entries than hops: the leftmost is the best there is.
        let short = rules.caller(ip("10.0.0.2"), &mut HeaderMap::new());
        assert_eq!(short.address, ip("10.0.0.2"));
        // Garbage where the client should be is not a way to become the proxy: the
        // client is unknown, trusted by no address.
        let rules = trust("forwarded_hops = 2\nsources = [\"10.0.0.0/8\"]");
        let garbage = rules.caller(ip("10.0.0.2"), &mut forwarded("nonsense, 10.0.0.1"));
        assert!(!garbage.trusted);
        let mut headers = HeaderMap::new();
        headers.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.7\xff, 10.0.0.1").unwrap(),
        );
        assert!(!rules.caller(ip("10.0.0.2"), &mut headers).trusted);
        // Several lines are one chain.
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.7"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        assert_eq!(
            rules.caller(ip("10.0.0.2"), &mut headers).address,
            ip("198.51.100.7")
        );
    }

    #[test]
    fn with_listed_proxies_the_first_unlisted_address_from_the_right_is_the_client() {
        let rules = trust("proxies = [\"10.0.0.0/24\"]\nsources = [\"192.0.2.0/24\"]");
        let caller = rules.caller(
            ip("10.0.0.5"),
            &mut forwarded("192.0.2.1, 198.51.100.7, 10.0.0.4"),
        );
        assert_eq!(caller.address, ip("198.51.100.7"));
        assert!(!caller.trusted, "192.0.2.1 was the client's own claim");
        // A peer that is not a listed proxy is the client.
        let direct = rules.caller(ip("192.0.2.8"), &mut forwarded("10.0.0.4"));
        assert_eq!(direct.address, ip("192.0.2.8"));
        assert!(direct.trusted && !direct.via_trusted_proxy);
    }

    #[test]
    fn a_credential_trusts_from_anywhere_and_never_reaches_the_model() {
        let digest = hex::encode(Sha256::digest(b"s3cret-credential"));
        let rules = trust(&format!("credentials_sha256 = [\"{digest}\"]"));
        let mut headers = HeaderMap::new();
        headers.insert(&CREDENTIAL, HeaderValue::from_static("s3cret-credential"));
        assert!(rules.caller(ip("203.0.113.9"), &mut headers).trusted);
        assert!(headers.get(&CREDENTIAL).is_none());
        headers.insert(&CREDENTIAL, HeaderValue::from_static("wrong"));
        assert!(!rules.caller(ip("203.0.113.9"), &mut headers).trusted);
        assert!(headers.get(&CREDENTIAL).is_none());
    }
}
