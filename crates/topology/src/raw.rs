//! The topology file as written: serde structs that mirror the TOML and keep spans.
//!
//! Unknown keys are rejected here (`deny_unknown_fields`), so a typo never
//! silently falls back to a default.

use serde::Deserialize;
use std::net::IpAddr;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub site: Option<RawSite>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<RawHost>,
    pub load_balancer: Option<S<RawLoadBalancer>>,
    pub web: Option<S<RawWeb>>,
    pub app: Option<S<RawApp>>,
    pub database: Option<S<RawDatabase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: S<String>,
    pub address: S<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    pub host: S<String>,
    pub port: S<u16>,
    pub admin_port: S<u16>,
    pub algorithm: Option<S<String>>,
    pub servers: Option<S<Vec<S<RawServer>>>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<RawBackend>,
    pub health_check: Option<RawHealthCheck>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<RawPool>,
    pub tls: Option<RawTls>,
    /// Field name -> value ("" removes the field) on every server response.
    pub response_headers: Option<std::collections::BTreeMap<String, S<String>>>,
    /// The same, on every request forwarded to a server.
    pub request_headers: Option<std::collections::BTreeMap<String, S<String>>>,
    /// Status -> file: the body of the load balancer's own answer.
    pub error_pages: Option<std::collections::BTreeMap<String, S<String>>>,
    pub sticky_cookie: Option<S<String>>,
    pub rate_limit: Option<RawRateLimit>,
    pub access_log: Option<S<bool>>,
    pub fast_lane: Option<S<bool>>,
    pub pipelining: Option<S<bool>>,
    pub max_connections: Option<S<u64>>,
    pub header_timeout_ms: Option<S<u64>>,
    pub keep_alive_timeout_ms: Option<S<u64>>,
    pub max_queue: Option<S<u64>>,
    pub queue_timeout_ms: Option<S<u64>>,
    pub max_body_bytes: Option<S<u64>>,
    pub client_timeout_ms: Option<S<u64>>,
    pub tunnel_timeout_ms: Option<S<u64>>,
    // Defaults for every server; a `[[load_balancer.backend]]` may override them.
    pub connect_timeout_ms: Option<S<u64>>,
    pub response_timeout_ms: Option<S<u64>>,
    pub server_max_connections: Option<S<u64>>,
    pub slow_start_ms: Option<S<u64>>,
}

/// A backend given by address (any HTTP server, not only webinfra's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: S<String>,
    /// `IP:PORT`, or `NAME:PORT` resolved when the file is loaded.
    pub address: S<String>,
    pub weight: Option<S<u32>>,
    pub backup: Option<S<bool>>,
    pub connect_timeout_ms: Option<S<u64>>,
    pub response_timeout_ms: Option<S<u64>>,
    pub max_connections: Option<S<u64>>,
    pub slow_start_ms: Option<S<u64>>,
}

/// A load-balanced web host in `servers`: `"server-01"`, or
/// `{ host = "server-01", weight = 3, backup = true }`.
#[derive(Debug)]
pub enum RawServer {
    /// Just the host (weight 1, not a backup).
    Host(String),
    /// The host with its settings.
    Entry {
        host: S<String>,
        weight: Option<S<u32>>,
        backup: Option<S<bool>>,
    },
}

impl<'de> Deserialize<'de> for RawServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawServer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a host name, or a table { host = \"...\", weight = N, backup = true }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawServer, E> {
                Ok(RawServer::Host(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawServer, A::Error> {
                const KEYS: &[&str] = &["host", "weight", "backup"];
                let (mut host, mut weight, mut backup) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "host" => host = Some(map.next_value()?),
                        "weight" => weight = Some(map.next_value()?),
                        "backup" => backup = Some(map.next_value()?),
                        other => return Err(serde::de::Error::unknown_field(other, KEYS)),
                    }
                }
                let host = host.ok_or_else(|| serde::de::Error::missing_field("host"))?;
                Ok(RawServer::Entry {
                    host,
                    weight,
                    backup,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A pool of servers for the requests it matches (`[[load_balancer.pool]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: S<String>,
    pub hosts: Option<S<Vec<S<String>>>>,
    pub paths: Option<S<Vec<S<String>>>>,
    pub algorithm: Option<S<String>>,
    pub health_check: Option<RawHealthCheck>,
    pub pipelining: Option<S<bool>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<RawBackend>,
}

/// Requests per client address (`[load_balancer.rate_limit]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_s: S<u32>,
    pub burst: Option<S<u32>>,
}

/// HTTPS on the load balancer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub port: S<u16>,
    pub certificate: Option<S<String>>,
    pub key: Option<S<String>>,
    pub redirect_http: Option<S<bool>>,
    pub hsts_max_age_s: Option<S<u64>>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
}

/// One more certificate, served to clients that ask for a name it is valid for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub certificate: S<String>,
    pub key: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub interval_ms: Option<S<u64>>,
    pub timeout_ms: Option<S<u64>>,
    pub rise: Option<S<u32>>,
    pub fall: Option<S<u32>>,
    pub expect_status: Option<S<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub hosts: S<Vec<S<String>>>,
    pub port: S<u16>,
    pub static_dir: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub hosts: S<Vec<S<String>>>,
    pub port: S<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub primary: Option<S<String>>,
    #[serde(default)]
    pub replicas: Option<S<Vec<S<String>>>>,
    pub port: S<u16>,
    pub admin_port: S<u16>,
    pub schema: Option<S<String>>,
    pub monitor_host: Option<S<String>>,
    pub monitor_port: Option<S<u16>>,
    pub max_replica_lag_ms: Option<S<u64>>,
}
