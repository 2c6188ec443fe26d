//! Response body type shared by every webinfra HTTP server, and small builders.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// Boxed error carried by response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one response body type: static bytes or a streamed upstream body.
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A short `text/plain` response, e.g. a 502 naming the server that failed.
pub fn text_response(status: StatusCode, text: impl Into<String>) -> Response<ResBody> {
    let mut text = text.into();
    text.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(text))
        .expect("static response parts are valid")
}

/// Boxes an upstream body so it can be returned as a [`ResBody`].
pub fn stream(body: crate::UpstreamBody) -> ResBody {
    body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

/// A JSON response (admin and health endpoints).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ResBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("static response parts are valid")
}
