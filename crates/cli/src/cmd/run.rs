//! `webinfra run ROLE --host H`: one role process. It binds its own host's
//! addresses, then hands the listeners to the role's `run`.

use crate::args::StackArgs;
use crate::signals::shutdown;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use webinfra_supervisor::Role;
use webinfra_topology::{Credentials, Topology};

pub async fn run(role: &str, host: Option<&str>, stack: &StackArgs) -> i32 {
    let Some(role) = Role::parse(role) else {
        eprintln!(
            "webinfra: unknown role `{role}` (load-balancer, web, app, database, db-monitor)"
        );
        return 2;
    };
    let topology = match super::load(&stack.topology) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let log = std::env::var_os(webinfra_process::LOG_FILE_ENV).map(std::path::PathBuf::from);
    tokio::spawn(crate::signals::reopen_log_on_usr1(log));
    let result = match role {
        Role::LoadBalancer => load_balancer(&topology, host, stack).await,
        Role::Web => web(&topology, host, stack).await,
        Role::App => app(&topology, host, stack).await,
        Role::Database => database(&topology, host, stack).await,
        Role::DbMonitor => db_monitor(&topology, host, stack).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            super::fail(e)
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

/// The host to run on: `--host`, or the only candidate.
fn pick_host(hosts: &[String], host: Option<&str>, role: &str) -> anyhow::Result<String> {
    match host {
        Some(h) if hosts.iter().any(|x| x == h) => Ok(h.to_string()),
        Some(h) => bail!(
            "host `{h}` runs no {role} in this topology (hosts: {})",
            hosts.join(", ")
        ),
        None if hosts.len() == 1 => Ok(hosts[0].clone()),
        None => bail!(
            "several hosts run a {role}: pass --host (one of {})",
            hosts.join(", ")
        ),
    }
}

async fn load_balancer(t: &Topology, host: Option<&str>, stack: &StackArgs) -> anyhow::Result<()> {
    let lb = t
        .load_balancer
        .clone()
        .context("the topology has no [load_balancer]")?;
    pick_host(std::slice::from_ref(&lb.host), host, "load balancer")?;
    let lb = crate::certificate::fill_in(t, lb, &stack.state_dir)?;
    // Two descriptors per client (its own and its server's), plus the pools.
    let needed = 2 * lb.clients.max_connections as u64 + 1024;
    let limit = webinfra_process::raise_open_files_limit();
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            max_connections = lb.clients.max_connections,
            "the limit on open files is below what max_connections needs: raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max_connections"
        );
    }
    webinfra_lb::error_pages::ErrorPages::load(&lb).map_err(anyhow::Error::msg)?;
    let site = bind(lb.listen, "load balancer").await?;
    let tls = match &lb.tls {
        None => None,
        Some(tls) => {
            let certificate = webinfra_lb::tls::Tls::load(tls).map_err(anyhow::Error::msg)?;
            Some((bind(tls.listen, "load balancer HTTPS").await?, certificate))
        }
    };
    let admin = bind(lb.admin, "load balancer admin").await?;
    // SIGHUP and `webinfra reload` re-read the same file (and the certificate).
    let path = stack.topology.clone();
    let state_dir = stack.state_dir.clone();
    let source: webinfra_lb::ConfigSource = std::sync::Arc::new(move || {
        let topology = Topology::load(&path).map_err(|e| e.to_string())?;
        let lb = topology
            .load_balancer
            .clone()
            .ok_or_else(|| format!("{}: the topology has no [load_balancer]", path.display()))?;
        crate::certificate::fill_in(&topology, lb, &state_dir).map_err(|e| format!("{e:#}"))
    });
    let (tx, triggers) = tokio::sync::mpsc::channel(4);
    tokio::spawn(renew_default_certificate(
        t.clone(),
        stack.state_dir.clone(),
        tx.clone(),
    ));
    tokio::spawn(crate::signals::on_hangup(tx));
    let reload = webinfra_lb::Reload { source, triggers };
    let listeners = webinfra_lb::Listeners { site, tls, admin };
    webinfra_lb::run(listeners, lb, reload, shutdown()).await;
    Ok(())
}

/// The default certificate is issued again while the load balancer runs:
/// twice a day it looks, and when it is due, reloads (which issues it).
async fn renew_default_certificate(
    t: Topology,
    state_dir: std::path::PathBuf,
    reload: tokio::sync::mpsc::Sender<()>,
) {
    let Some(lb) = t.load_balancer.clone() else {
        return;
    };
    let mut every = tokio::time::interval(std::time::Duration::from_secs(12 * 3600));
    every.tick().await;
    loop {
        every.tick().await;
        if crate::certificate::due(&t, &lb, &state_dir) {
            tracing::info!("the default certificate is due: reloading to issue it again");
            if reload.send(()).await.is_err() {
                return;
            }
        }
    }
}

async fn web(t: &Topology, host: Option<&str>, stack: &StackArgs) -> anyhow::Result<()> {
    let web = t.web.as_ref().context("the topology has no [web]")?;
    let app = t.app.as_ref().context("the topology has no [app]")?;
    let host = pick_host(&web.hosts, host, "web server")?;
    let static_root = match &web.static_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = stack.state_dir.join(&host).join("static");
            webinfra_app::assets::write_to(&dir)
                .with_context(|| format!("writing the static files to {}", dir.display()))?;
            std::path::absolute(dir)?
        }
    };
    let app_on = |h: &String| webinfra_proxy::Upstream {
        name: format!("{h}/app"),
        addr: t.addr(h, app.port),
    };
    let fallbacks = others_after(&app.hosts, &host).map(app_on).collect();
    let config = webinfra_web::WebConfig {
        server_name: host.clone(),
        app: app_on(&host),
        fallbacks,
        static_root,
    };
    let listener = bind(t.addr(&host, web.port), "web server").await?;
    webinfra_web::run(listener, config, shutdown()).await;
    Ok(())
}

/// The hosts other than `host`, from the one after it on (each web server
/// leans on a different application when its own fails).
fn others_after<'h>(hosts: &'h [String], host: &'h str) -> impl Iterator<Item = &'h String> {
    let n = hosts.len();
    let start = hosts.iter().position(|h| h == host).map_or(0, |i| i + 1);
    (0..n)
        .map(move |k| &hosts[(start + k) % n])
        .filter(move |h| *h != host)
}

async fn app(t: &Topology, host: Option<&str>, stack: &StackArgs) -> anyhow::Result<()> {
    let app = t.app.as_ref().context("the topology has no [app]")?;
    let host = pick_host(&app.hosts, host, "application server")?;
    let credentials = Credentials::load_or_create(&stack.state_dir)?;
    let config = webinfra_app::AppConfig {
        server_name: host.clone(),
        database: t
            .database
            .clone()
            .context("the topology has no [database]")?,
        credentials,
    };
    let listener = bind(t.addr(&host, app.port), "application server").await?;
    webinfra_app::run(listener, config, shutdown()).await?;
    Ok(())
}

async fn database(t: &Topology, host: Option<&str>, stack: &StackArgs) -> anyhow::Result<()> {
    let db = t
        .database
        .clone()
        .context("the topology has no [database]")?;
    let names: Vec<String> = db.nodes.iter().map(|n| n.name.clone()).collect();
    let host = pick_host(&names, host, "database")?;
    let node = db.node(&host).expect("picked from the nodes").clone();
    let app_hosts = t
        .app
        .iter()
        .flat_map(|a| a.hosts.iter().map(|h| t.addr(h, 0).ip()))
        .collect();
    let config = webinfra_db::NodeConfig {
        dir: stack.state_dir.join(&host).join("mariadb"),
        credentials: Credentials::load_or_create(&stack.state_dir)?,
        node: node.clone(),
        database: db,
        app_hosts,
    };
    let admin = bind(node.admin, "database admin").await?;
    webinfra_db::run(admin, config, shutdown()).await
}

async fn db_monitor(t: &Topology, host: Option<&str>, stack: &StackArgs) -> anyhow::Result<()> {
    let db = t
        .database
        .clone()
        .context("the topology has no [database]")?;
    pick_host(
        std::slice::from_ref(&db.monitor_host),
        host,
        "database monitor",
    )?;
    let credentials = Credentials::load_or_create(&stack.state_dir)?;
    let listener = bind(db.monitor, "database monitor").await?;
    webinfra_monitor::run(listener, &db, &credentials, &stack.state_dir, shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::others_after;

    #[test]
    fn each_host_falls_back_on_the_others_from_the_next_on() {
        let hosts: Vec<String> = ["s1", "s2", "s3"].map(String::from).to_vec();
        let after = |h| others_after(&hosts, h).cloned().collect::<Vec<_>>();
        assert_eq!(after("s1"), ["s2", "s3"]);
        assert_eq!(after("s2"), ["s3", "s1"]);
        assert_eq!(after("s3"), ["s1", "s2"]);
        assert_eq!(after("elsewhere"), ["s1", "s2", "s3"]);
        assert_eq!(others_after(&hosts[..1], "s1").count(), 0);
        assert_eq!(others_after(&[], "s1").count(), 0);
    }
}
