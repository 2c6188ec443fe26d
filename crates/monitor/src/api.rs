//! The monitor's HTTP API: `GET /healthz` and `/cluster` (JSON), `GET /metrics`
//! (Prometheus text), `POST /switchover[?to=NODE]`, `POST /failover`,
//! `POST /rejoin/NODE`. The POSTs are taken only from this machine and the
//! topology's hosts ([`Operators`]), and each is logged with its source.

use crate::Monitor;
use http::{header, Method, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_proxy::{full, json_response, Operators, ResBody};

pub async fn serve(
    listener: TcpListener,
    monitor: Arc<Monitor>,
    operators: Operators,
    shutdown: impl std::future::Future<Output = ()>,
) {
    webinfra_proxy::serve(
        listener,
        move |req, peer| {
            let monitor = monitor.clone();
            let operators = operators.clone();
            async move {
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    if let Some(refused) =
                        operators.refusal("db-monitor", req.method(), &path, peer)
                    {
                        return refused;
                    }
                }
                match (req.method().clone(), path.as_str()) {
                    (Method::GET, "/healthz") | (Method::GET, "/cluster") => {
                        let view = monitor.view();
                        let mut body = serde_json::to_value(&*view).expect("serialisable");
                        body["role"] = "db-monitor".into();
                        body["pid"] = std::process::id().into();
                        let code = if view.status == "down" {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        json_response(code, &body)
                    }
                    (Method::GET, "/metrics") => metrics(&monitor),
                    (Method::POST, "/switchover") => {
                        let to = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("to="))
                            .map(str::to_string);
                        done(monitor.switchover(to.as_deref()).await)
                    }
                    (Method::POST, "/failover") => done(monitor.force_failover().await),
                    (Method::POST, p) if p.starts_with("/rejoin/") => {
                        match monitor.rejoin(&p["/rejoin/".len()..]) {
                            Ok(()) => json_response(
                                StatusCode::OK,
                                &json!({ "rejoining": &p["/rejoin/".len()..] }),
                            ),
                            Err(e) => json_response(StatusCode::NOT_FOUND, &json!({ "error": e })),
                        }
                    }
                    _ => json_response(
                        StatusCode::NOT_FOUND,
                        &json!({ "error": "unknown request" }),
                    ),
                }
            }
        },
        shutdown,
    )
    .await;
}

fn done(r: Result<crate::state::Failover, String>) -> Response<ResBody> {
    match r {
        Ok(f) => json_response(
            StatusCode::OK,
            &serde_json::to_value(f).expect("serialisable"),
        ),
        Err(e) => json_response(StatusCode::CONFLICT, &json!({ "error": e })),
    }
}

fn metrics(monitor: &Monitor) -> Response<ResBody> {
    let v = monitor.view();
    let mut out = String::new();
    out.push_str("# HELP webinfra_db_semi_sync_active 1 when the primary's commits wait for a replica (semi-sync on and a replica attached).\n# TYPE webinfra_db_semi_sync_active gauge\n");
    out.push_str(&format!(
        "webinfra_db_semi_sync_active {}\n",
        u8::from(v.semi_sync)
    ));
    out.push_str("# HELP webinfra_db_semi_sync_clients Replicas attached to the primary that acknowledge commits (Rpl_semi_sync_master_clients).\n# TYPE webinfra_db_semi_sync_clients gauge\n");
    out.push_str(&format!(
        "webinfra_db_semi_sync_clients {}\n",
        v.semi_sync_clients
    ));
    out.push_str("# HELP webinfra_db_semi_sync_acknowledged_commits Commits on the current primary, by whether a replica acknowledged them (Rpl_semi_sync_master_yes_tx, _no_tx; reset when mariadbd restarts).\n# TYPE webinfra_db_semi_sync_acknowledged_commits gauge\n");
    out.push_str(&format!(
        "webinfra_db_semi_sync_acknowledged_commits{{by=\"replica\"}} {}\nwebinfra_db_semi_sync_acknowledged_commits{{by=\"none\"}} {}\n",
        v.semi_sync_yes_tx, v.semi_sync_no_tx
    ));
    out.push_str("# HELP webinfra_db_primary_changes_total Failovers and switchovers.\n# TYPE webinfra_db_primary_changes_total counter\n");
    out.push_str(&format!(
        "webinfra_db_primary_changes_total {}\n",
        v.changes
    ));
    out.push_str("# HELP webinfra_db_node_up 1 when the node answered the last probe.\n# TYPE webinfra_db_node_up gauge\n");
    for n in &v.nodes {
        out.push_str(&format!(
            "webinfra_db_node_up{{node=\"{}\",role=\"{}\"}} {}\n",
            n.name,
            n.role,
            u8::from(n.reachable)
        ));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(full(out))
        .expect("valid response")
}
