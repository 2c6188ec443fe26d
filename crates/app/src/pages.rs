//! The HTML board: the latest messages and a form to post one. Plain HTML
//! forms (POST, then 303 back to `/`), so it works in any browser, no script.

use crate::api::{self, NewMessage, MAX_AUTHOR, MAX_TEXT};
use crate::error::ApiError;
use crate::{AppState, DB_NODE};
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use std::sync::Arc;

fn escape(s: &str) -> String {
    let s = crate::text::displayable(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn page(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    after: Option<&str>,
) -> Response {
    let (list, node) = match api::latest(state, None, 50, after).await {
        Ok((messages, node)) if messages.is_empty() => (
            "<p class=\"empty\">No messages yet. Be the first!</p>".to_string(),
            Some(node),
        ),
        Ok((messages, node)) => {
            let items: String = messages
                .iter()
                .map(|m| {
                    format!(
                        "<li><p class=\"text\">{}</p><p class=\"meta\">{} &middot; <time datetime=\"{}\">{}</time></p></li>\n",
                        escape(&m.text),
                        escape(&m.author),
                        m.created_at,
                        m.created_at.get(..19).unwrap_or(&m.created_at).replace('T', " ")
                    )
                })
                .collect();
            (format!("<ol class=\"messages\">\n{items}</ol>"), Some(node))
        }
        Err(e) => (
            format!(
                "<p class=\"error\">Messages cannot be shown right now: {}</p>",
                escape(&e.message)
            ),
            None,
        ),
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>foobar.com message board</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header><h1>foobar.com</h1><p>Served by {server}{db}</p></header>
<main>
<form method="post" action="/messages">
{error}<label>Name <input name="author" maxlength="{MAX_AUTHOR}" required></label>
<label>Message <textarea name="text" maxlength="{MAX_TEXT}" rows="3" required></textarea></label>
<button type="submit">Post</button>
</form>
{list}
</main>
</body>
</html>
"#,
        server = escape(&state.server_name),
        db = node
            .as_deref()
            .map(|n| format!(", data from {}", escape(n)))
            .unwrap_or_default(),
    );
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(n) = node.and_then(|n| HeaderValue::from_str(&n).ok()) {
        resp.headers_mut().insert(DB_NODE, n);
    }
    resp
}

/// `GET /`: the board.
pub async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let after = api::written_gtid(&headers);
    page(&state, StatusCode::OK, None, after.as_deref()).await
}

/// `POST /messages` from the form: store, then back to the board.
pub async fn post_form(
    State(state): State<Arc<AppState>>,
    form: Result<Form<NewMessage>, FormRejection>,
) -> Response {
    let result = async {
        let Form(new) =
            form.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()))?;
        api::insert(&state, new.validate()?).await
    }
    .await;
    match result {
        Ok(stored) => {
            let mut resp = Redirect::to("/").into_response();
            if !stored.gtid.is_empty() {
                resp.headers_mut()
                    .insert(header::SET_COOKIE, api::gtid_cookie(&stored.gtid));
            }
            resp
        }
        Err(e) => page(&state, e.status, Some(&e.message), None).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
