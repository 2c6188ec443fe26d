//! `webinfra lb drain|disable|enable SERVER`, `webinfra lb weight SERVER N`
//! and `webinfra reload`: the load balancer's admin API.

use crate::args::StackArgs;
use http::Method;
use std::time::Duration;
use webinfra_proxy::probe::call;

/// The load balancer's admin address from the topology (a checked file), or the exit code.
fn admin_address(stack: &StackArgs) -> Result<std::net::SocketAddr, i32> {
    let topology = super::load(&stack.topology)?;
    match topology.load_balancer {
        Some(lb) => Ok(lb.admin),
        None => {
            eprintln!("webinfra: the topology has no [load_balancer]");
            Err(2)
        }
    }
}

pub async fn lb(stack: &StackArgs, action: &str, server: &str, value: Option<&str>) -> i32 {
    let path = match (action, value) {
        ("drain" | "disable" | "enable", None) => format!("/servers/{server}/{action}"),
        ("weight", Some(w)) => format!("/servers/{server}/weight/{w}"),
        ("weight", None) => {
            eprintln!("webinfra: `lb weight` takes the new weight: webinfra lb weight {server} 3");
            return 2;
        }
        ("drain" | "disable" | "enable", Some(v)) => {
            eprintln!("webinfra: `lb {action}` takes no value (got `{v}`)");
            return 2;
        }
        _ => {
            eprintln!("webinfra: unknown action `{action}` (drain, disable, enable, weight)");
            return 2;
        }
    };
    let admin = match admin_address(stack) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match call(admin, Method::POST, &path, Duration::from_secs(3)).await {
        Ok((200, body)) => {
            match body.filter(|_| action == "weight") {
                Some(b) => say!(
                    "{server}: weight {} (was {}) until the next reload",
                    b["weight"],
                    b["before"]
                ),
                None => say!("{server}: {action}"),
            }
            0
        }
        Ok((code, body)) => {
            let why = body
                .as_ref()
                .and_then(|b| b["error"].as_str().map(String::from));
            eprintln!(
                "webinfra: {}",
                why.unwrap_or_else(|| "the load balancer refused".into())
            );
            // No such server, a weight out of range, weights under round robin: bad input.
            if matches!(code, 400 | 404 | 409) {
                2
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!(
                "webinfra: cannot reach the load balancer's admin address {}: {e}",
                admin
            );
            1
        }
    }
}

/// `webinfra reload`: checks the file here (errors with their lines), then asks
/// the running load balancer to re-read it and prints what changed.
pub async fn reload(stack: &StackArgs) -> i32 {
    let admin = match admin_address(stack) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match call(admin, Method::POST, "/reload", Duration::from_secs(5)).await {
        Ok((200, Some(body))) => {
            let changes: Vec<&str> = body["changes"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            if changes.is_empty() {
                say!("reloaded: nothing changed");
            } else {
                say!("reloaded:");
                for c in changes {
                    say!("  {c}");
                }
            }
            0
        }
        Ok((_, body)) => {
            let why = body.and_then(|b| b["error"].as_str().map(String::from));
            eprintln!(
                "webinfra: reload refused, the running configuration stays: {}",
                why.unwrap_or_else(|| "no reason given".into())
            );
            1
        }
        Err(e) => {
            eprintln!(
                "webinfra: cannot reach the load balancer's admin address {}: {e}",
                admin
            );
            1
        }
    }
}
