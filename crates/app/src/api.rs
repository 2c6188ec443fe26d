//! The JSON API: `GET/POST /api/messages`, `GET /api/messages/{id}`.
//!
//! Bad input never reaches the database and never gets a 500: wrong content
//! type 415, malformed JSON 400, missing or invalid fields 422, oversize body
//! 413, unknown id 404 -- each with a JSON `{"error": ...}` body.

use crate::error::ApiError;
use crate::router::{DbError, QueryFuture};
use crate::{AppState, DB_NODE};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest author name, in characters.
pub const MAX_AUTHOR: usize = 64;
/// Longest message text, in characters.
pub const MAX_TEXT: usize = 1000;
/// Largest accepted request body.
const MAX_BODY: usize = 16 * 1024;
/// Default and largest page sizes.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// Assigned by the database, increasing.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// What they wrote.
    pub text: String,
    /// When it was stored, RFC 3339 UTC.
    pub created_at: String,
}

/// A message to post.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Who writes it.
    pub author: String,
    /// What they write.
    pub text: String,
}

impl NewMessage {
    /// Trims and checks the fields ([`crate::text`]: no control characters
    /// or noncharacters; a name is one line).
    pub fn validate(self) -> Result<NewMessage, ApiError> {
        let bad = |m: String| Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m));
        let clean = |name: &str, value: &str, multiline| {
            crate::text::clean(value.trim(), multiline).map_err(|u| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "`{name}` holds {} at character {}: control characters (but newline and tab in `text`) and noncharacters are not accepted",
                        u.code, u.position
                    ),
                )
            })
        };
        let author = clean("author", &self.author, false)?;
        let text = clean("text", &self.text, true)?;
        if author.is_empty() {
            return bad("`author` must not be empty".into());
        }
        if author.chars().count() > MAX_AUTHOR {
            return bad(format!("`author` is longer than {MAX_AUTHOR} characters"));
        }
        if text.is_empty() {
            return bad("`text` must not be empty".into());
        }
        if text.chars().count() > MAX_TEXT {
            return bad(format!("`text` is longer than {MAX_TEXT} characters"));
        }
        Ok(NewMessage { author, text })
    }
}

const SELECT: &str =
    "SELECT id, author, text, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM messages";

type Row = (u64, String, String, String);

fn to_message((id, author, text, created_at): Row) -> Message {
    Message {
        id,
        author,
        text,
        created_at,
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/messages", get(list).post(create))
        .route("/api/messages/{id}", get(show))
}

/// The cookie that carries a client's last write, for read-your-writes.
pub const GTID_COOKIE: &str = "wi_gtid";

/// The GTID of the client's last write, from its cookie.
pub fn written_gtid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == GTID_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 200
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
        })
}

/// `Set-Cookie` for a write's GTID: later reads wait for it on a replica.
pub fn gtid_cookie(gtid: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{GTID_COOKIE}={gtid}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax"
    ))
    .expect("digits and dashes")
}

/// A stored message, the node that stored it and the write's GTID.
pub struct Stored {
    /// The message as stored.
    pub message: Message,
    /// The primary's name.
    pub node: String,
    /// The commit's GTID (`@@last_gtid`).
    pub gtid: String,
}

/// Stores a validated message on the primary and reads it back.
pub async fn insert(state: &AppState, m: NewMessage) -> Result<Stored, ApiError> {
    let started = std::time::Instant::now();
    let ((row, gtid), node) = state
        .db
        .write(|conn| {
            let (author, text) = (m.author.clone(), m.text.clone());
            Box::pin(async move {
                conn.exec_drop(
                    "INSERT INTO messages (author, text) VALUES (?, ?)",
                    (author, text),
                )
                .await?;
                let id = conn.last_insert_id().unwrap_or(0);
                let gtid: Option<String> = conn.query_first("SELECT @@last_gtid").await?;
                let row = conn
                    .exec_first::<Row, _, _>(format!("{SELECT} WHERE id = ?"), (id,))
                    .await?;
                Ok((row, gtid.unwrap_or_default()))
            })
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "write failed");
            match e {
                DbError::Unreachable(m) | DbError::Refused(m) => {
                    ApiError::unavailable(format!("{m}; the message was not stored"))
                }
                DbError::Failed(m) => {
                    ApiError::unavailable(format!("{m}; the message may not have been stored"))
                }
            }
        })?;
    let row =
        row.ok_or_else(|| ApiError::unavailable("the stored message could not be read back"))?;
    let took = started.elapsed();
    let key = (row.0, m.author.clone(), m.text.clone());
    if !state
        .db
        .durable(node, took, |conn| stored_there(conn, key.clone()))
        .await
    {
        tracing::warn!(%node, ?took, %gtid, "a slow write is on no other node: not acknowledged");
        return Err(ApiError::unavailable(format!(
            "{node} took {took:?} to commit and the message is on no other node: \
             it may not have been stored (a failover may have replaced {node})"
        )));
    }
    Ok(Stored {
        message: to_message(row),
        node: node.to_string(),
        gtid,
    })
}

/// Whether the message `(id, author, text)` is stored on `conn`'s node.
fn stored_there(conn: &mut mysql_async::Conn, key: (u64, String, String)) -> QueryFuture<'_, bool> {
    Box::pin(async move {
        let found: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM messages WHERE id = ? AND author = ? AND text = ?",
                key,
            )
            .await?;
        Ok(found.is_some())
    })
}

/// The newest messages, newest first, older than `before` when given.
pub async fn latest(
    state: &AppState,
    before: Option<u64>,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<Message>, String), ApiError> {
    let (rows, node) = state
        .db
        .read(after, |conn| {
            Box::pin(async move {
                conn.exec::<Row, _, _>(
                    format!("{SELECT} WHERE id < ? ORDER BY id DESC LIMIT ?"),
                    (before.unwrap_or(u64::MAX), limit),
                )
                .await
            })
        })
        .await
        .map_err(ApiError::unavailable)?;
    Ok((rows.into_iter().map(to_message).collect(), node.to_string()))
}

fn with_node(mut resp: Response, node: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(node) {
        resp.headers_mut().insert(DB_NODE, v);
    }
    resp
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut before = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid query parameter `{pair}`"),
            )
        };
        match k {
            "limit" => {
                limit = v.parse().map_err(|_| bad())?;
                if limit == 0 || limit > MAX_LIMIT {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("`limit` must be between 1 and {MAX_LIMIT}"),
                    ));
                }
            }
            "before" => before = Some(v.parse::<u64>().map_err(|_| bad())?),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{k}`"),
                ))
            }
        }
    }
    let after = written_gtid(&headers);
    let (messages, node) = latest(&state, before, limit, after.as_deref()).await?;
    let next = (messages.len() == limit as usize)
        .then(|| {
            messages
                .last()
                .map(|m| format!("/api/messages?before={}&limit={limit}", m.id))
        })
        .flatten();
    let body = serde_json::json!({ "messages": messages, "next": next });
    Ok(with_node(Json(body).into_response(), &node))
}

async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no message with id {id}"));
    let Ok(numeric) = id.parse::<u64>() else {
        return Err(not_found());
    };
    fn by_id(conn: &mut mysql_async::Conn, id: u64) -> crate::router::QueryFuture<'_, Option<Row>> {
        Box::pin(async move {
            conn.exec_first::<Row, _, _>(format!("{SELECT} WHERE id = ?"), (id,))
                .await
        })
    }
    let after = written_gtid(&headers);
    let (mut row, mut node) = state
        .db
        .read(after.as_deref(), |c| by_id(c, numeric))
        .await
        .map_err(ApiError::unavailable)?;
    if row.is_none() && Some(node) != state.db.primary_name() {
        // A replica may not have it yet (a client without our cookie): only
        // the primary can say it does not exist.
        if let Ok((r, n)) = state.db.read_primary(|c| by_id(c, numeric)).await {
            (row, node) = (r, n);
        }
    }
    let message = row.map(to_message).ok_or_else(not_found)?;
    Ok(with_node(Json(message).into_response(), node))
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the message as `Content-Type: application/json`",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    })?;
    let new: NewMessage = serde_json::from_slice(&bytes).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("invalid message: {e}"))
    })?;
    let stored = insert(&state, new.validate()?).await?;
    let message = &stored.message;
    tracing::info!(id = message.id, node = %stored.node, gtid = %stored.gtid, "message stored");
    let mut resp = (StatusCode::CREATED, Json(message)).into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/api/messages/{}", message.id)).expect("digits"),
    );
    if !stored.gtid.is_empty() {
        resp.headers_mut()
            .insert(header::SET_COOKIE, gtid_cookie(&stored.gtid));
    }
    Ok(with_node(resp, &stored.node))
}

#[cfg(test)]
mod tests {
    use super::NewMessage;

    fn validate(author: &str, text: &str) -> Result<NewMessage, u16> {
        let m = NewMessage {
            author: author.into(),
            text: text.into(),
        };
        m.validate().map_err(|e| e.status.as_u16())
    }

    #[test]
    fn messages_with_control_characters_are_refused_with_422() {
        for text in ["nul\u{0}", "bell\u{7}", "rtl override \u{202e}", "\u{ffff}"] {
            assert_eq!(validate("ann", text).err(), Some(422), "{text:?}");
            assert_eq!(validate(text, "fine").err(), Some(422), "author {text:?}");
        }
        assert_eq!(validate("ann\nbob", "fine").err(), Some(422));
        let kept = validate("Zoë 👍", "שלום\r\nmerci, ça va\t😀").unwrap();
        assert_eq!(kept.author, "Zoë 👍");
        assert_eq!(kept.text, "שלום\nmerci, ça va\t😀");
    }
}
