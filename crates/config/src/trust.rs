//! Whom the data port believes (`[server.trust]`). A client of the data port is, by
//! default, anyone: the business's application, and through it whoever the application
//! serves. What a client may change about Sidelight's own behaviour — keep its traffic
//! out of training and monitoring, read developer or auditor views, report outcomes and
//! protected attributes, name the original client in forwarding headers — is honoured
//! only from the sources listed here.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `[server.trust]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Client networks (CIDR, `10.0.0.0/8`, or one address) whose Sidelight headers are
    /// honoured: `x-sidelight-probe`, protected attributes in headers, the developer
    /// and auditor audiences a route allows, and outcomes reported without a record's
    /// feedback token. The client is the address the forwarding rules below resolve.
    /// Empty (the default): no client is trusted by address.
    pub sources: Vec<IpNet>,
    /// SHA-256 digests (hex; `sidelight token hash` prints one) of credentials a client
    /// sends in `x-sidelight-credential` to be trusted from any address.
    pub credentials_sha256: Vec<String>,
    /// How many proxies in front of Sidelight append to `X-Forwarded-For` and are
    /// trusted to (Envoy's `xff_num_trusted_hops`): the client is the address that many
    /// entries from the right, counting the connection's own peer. 0: the peer is the
    /// client, and forwarding headers a client sends are replaced, not extended. Every
    /// peer then counts as a proxy: only for a data port that nothing but those proxies
    /// can reach (otherwise list them in `proxies`).
    pub forwarded_hops: usize,
    /// Proxies (CIDR) whose forwarding headers are believed, as an alternative to
    /// counting hops: walking `X-Forwarded-For` from the right, the first address not in
    /// this list is the client.
    pub proxies: Vec<IpNet>,
    /// Outcome reports (`POST /v1/feedback`) accepted per minute from one client
    /// address; past it, 429. Trusted sources are not limited.
    pub feedback_per_minute: u32,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            credentials_sha256: Vec::new(),
            forwarded_hops: 0,
            proxies: Vec::new(),
            feedback_per_minute: 60,
        }
    }
}

impl TrustConfig {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, digest) in self.credentials_sha256.iter().enumerate() {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    format!("server.trust.credentials_sha256[{i}]"),
                    "must be the 64 hex digits of a SHA-256 digest (`sidelight token hash` prints one), never the credential itself".to_owned(),
                ));
            }
        }
        if self.forwarded_hops > 64 {
            return Err((
                "server.trust.forwarded_hops".to_owned(),
                "must be at most 64".to_owned(),
            ));
        }
        if self.forwarded_hops > 0 && !self.proxies.is_empty() {
            return Err((
                "server.trust.forwarded_hops".to_owned(),
                "give either forwarded_hops or proxies, not both".to_owned(),
            ));
        }
        if self.feedback_per_minute == 0 {
            return Err((
                "server.trust.feedback_per_minute".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}
