//! The operator's bodies for the load balancer's own answers about its
//! servers and the rate limit (`[load_balancer.error_pages]`, HAProxy's
//! `errorfile`): a `503` page that says the site is being worked on, in the
//! site's style, instead of a line of plain text. The files are read when a
//! configuration is loaded (start, reload, `webinfra check`); one that
//! cannot be read refuses that configuration. The status and the other
//! fields (`Retry-After`) stay as the load balancer made them.

use bytes::Bytes;
use http::{HeaderValue, Response};
use webinfra_proxy::{full, ResBody};
use webinfra_topology::LoadBalancer;

/// The largest page taken: it is held in memory and sent whole.
const MAX_PAGE: u64 = 64 * 1024;

/// Pages by status.
#[derive(Debug, Default, Clone)]
pub struct ErrorPages(Vec<(u16, Bytes, HeaderValue)>);

impl ErrorPages {
    /// Reads the pages `config` names, or says which file cannot be used.
    pub fn load(config: &LoadBalancer) -> Result<ErrorPages, String> {
        let mut pages = Vec::new();
        for (status, path) in &config.error_pages {
            let why = |e: String| {
                format!(
                    "key `load_balancer.error_pages.{status}`: {}: {e}",
                    path.display()
                )
            };
            let size = std::fs::metadata(path)
                .map_err(|e| why(e.to_string()))?
                .len();
            if size > MAX_PAGE {
                return Err(why(format!("{size} bytes; an error page may have 64 KiB")));
            }
            let body = std::fs::read(path).map_err(|e| why(e.to_string()))?;
            pages.push((*status, Bytes::from(body), content_type(path)));
        }
        Ok(ErrorPages(pages))
    }

    /// `resp` (an answer the load balancer made) with the operator's page
    /// for its status, if there is one.
    pub fn apply(&self, mut resp: Response<ResBody>) -> Response<ResBody> {
        let status = resp.status().as_u16();
        if let Some((_, body, kind)) = self.0.iter().find(|(s, _, _)| *s == status) {
            let headers = resp.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, kind.clone());
            headers.remove(http::header::CONTENT_LENGTH);
            *resp.body_mut() = full(body.clone());
        }
        resp
    }
}

/// The page's type by its extension: HTML, JSON, else plain text.
fn content_type(path: &std::path::Path) -> HeaderValue {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    HeaderValue::from_static(match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    })
}
