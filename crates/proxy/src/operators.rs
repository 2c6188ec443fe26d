//! Who may change a running process through its admin address: this
//! machine (127.0.0.1, ::1) and the hosts the topology names, nobody else.
//! Every process with a state-changing admin request (the load balancer's
//! drain/weight/reload, the database monitor's switchover/failover/rejoin)
//! asks [`Operators::refusal`], which answers a refusal with `403` and logs
//! every request it is asked about, accepted or refused, with its source
//! address (refusals through [`crate::log_limit`], so a flood of them cannot
//! fill the disk).

use crate::body::{json_response, ResBody};
use http::{Method, Response, StatusCode};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses allowed to change a process's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operators {
    /// The topology's host addresses; loopback's own 127.0.0.1 and ::1 are always allowed.
    hosts: Vec<IpAddr>,
}

impl Operators {
    /// This machine and `hosts` (the topology's host addresses).
    pub fn new(hosts: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut hosts: Vec<IpAddr> = hosts.into_iter().map(|ip| ip.to_canonical()).collect();
        hosts.sort();
        hosts.dedup();
        Operators { hosts }
    }

    /// Whether `ip` may change state.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip == Ipv4Addr::LOCALHOST || ip == Ipv6Addr::LOCALHOST || self.hosts.contains(&ip)
    }

    /// For a request that changes state: `None` when `peer` may make it, else
    /// the `403` to answer. Either way the request is logged with its source.
    pub fn refusal(
        &self,
        role: &'static str,
        method: &Method,
        path: &str,
        peer: SocketAddr,
    ) -> Option<Response<ResBody>> {
        if self.allows(peer.ip()) {
            tracing::info!(%peer, %method, path, role, "admin request accepted");
            return None;
        }
        if let Some(suppressed) = crate::log_limit::allow() {
            tracing::warn!(%peer, %method, path, role, suppressed, "admin request refused: {peer} is not a host of the topology");
        }
        Some(json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({
                "error": format!("{} is not a host of the topology: changes are refused", peer.ip())
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_and_the_topologys_hosts_may_change_state() {
        let ops = Operators::new(["10.77.0.5".parse().unwrap()]);
        for ok in ["127.0.0.1", "::1", "10.77.0.5", "::ffff:10.77.0.5"] {
            assert!(ops.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["127.0.0.2", "10.77.0.6", "::ffff:10.77.0.6", "fe80::1"] {
            assert!(!ops.allows(no.parse().unwrap()), "{no}");
        }
        let refused = ops.refusal(
            "test",
            &Method::POST,
            "/x",
            "10.77.0.9:5000".parse().unwrap(),
        );
        assert_eq!(refused.unwrap().status(), 403);
    }
}
