//! The HTTP proxy engine shared by the load balancer and the web server.
//!
//! It owns everything both roles do the same way: accepting HTTP/1.1 and
//! HTTP/2 (h2c prior knowledge) connections ([`serve`]), refusing requests a server could
//! read differently ([`checks`]), rewriting headers on the way through
//! ([`headers`]), and sending a request to an upstream over
//! pooled keep-alive connections ([`client`]), with large request bodies
//! streamed ([`upload`]). Errors say which upstream
//! failed and whether the request may be retried elsewhere.

pub mod body;
pub mod checks;
pub mod client;
pub mod counter;
mod error;
pub mod headers;
pub mod idle;
pub mod lane;
pub mod log_limit;
pub mod operators;
mod pipeline;
mod pool;
pub mod probe;
mod read_buf;
mod scan;
pub mod serve;
mod timer;
pub mod tls;
pub mod upload;
pub mod upstream_body;
pub mod wire;

pub use body::{full, json_response, text_response, ResBody};
pub use client::{ProxyError, ProxyErrorKind, Upstream, UpstreamClient, Watch};
pub use operators::Operators;
pub use serve::{serve, serve_tls, serve_with, ListenerStats, Secure, ServeOptions};
pub use upload::{read_body, BodyError, RequestBody, Upload, UploadError};
pub use upstream_body::UpstreamBody;
