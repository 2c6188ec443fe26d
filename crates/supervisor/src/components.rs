//! The processes a topology asks for, one per role per host.

use serde::Serialize;
use std::net::SocketAddr;
use webinfra_topology::Topology;

/// A role process kind; its name is also the `webinfra run` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A supervised MariaDB node.
    Database,
    /// The database monitor (failover, rejoin, switchover).
    DbMonitor,
    /// An application server.
    App,
    /// A web server.
    Web,
    /// The load balancer.
    LoadBalancer,
}

impl Role {
    /// The role's name: `database`, `app`, `web`, `load-balancer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Database => "database",
            Role::DbMonitor => "db-monitor",
            Role::App => "app",
            Role::Web => "web",
            Role::LoadBalancer => "load-balancer",
        }
    }

    /// Parses a role name (also `db` and `lb`).
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "database" | "db" => Role::Database,
            "db-monitor" | "monitor" => Role::DbMonitor,
            "app" => Role::App,
            "web" => Role::Web,
            "load-balancer" | "lb" => Role::LoadBalancer,
            _ => return None,
        })
    }
}

/// One process of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentSpec {
    /// `host/role`, e.g. `server-01/web`.
    pub name: String,
    /// What it runs.
    pub role: Role,
    /// The host it belongs to.
    pub host: String,
    /// Where it serves (for the database: MariaDB's SQL address).
    pub address: SocketAddr,
    /// Where its `/healthz` answers.
    pub health: SocketAddr,
}

/// Every component of `t`, in start order: databases, monitor, apps, webs, load balancer.
pub fn components(t: &Topology) -> Vec<ComponentSpec> {
    let mut out = Vec::new();
    let mut add = |role: Role, host: &str, address: SocketAddr, health: SocketAddr| {
        out.push(ComponentSpec {
            name: format!("{host}/{}", role.as_str()),
            role,
            host: host.to_string(),
            address,
            health,
        })
    };
    if let Some(db) = &t.database {
        for n in &db.nodes {
            add(Role::Database, &n.name, n.sql, n.admin);
        }
        add(Role::DbMonitor, &db.monitor_host, db.monitor, db.monitor);
    }
    if let Some(app) = &t.app {
        for h in &app.hosts {
            let a = t.addr(h, app.port);
            add(Role::App, h, a, a);
        }
    }
    if let Some(web) = &t.web {
        for h in &web.hosts {
            let a = t.addr(h, web.port);
            add(Role::Web, h, a, a);
        }
    }
    if let Some(lb) = &t.load_balancer {
        add(Role::LoadBalancer, &lb.host, lb.listen, lb.admin);
    }
    out
}

/// The components matching `name`: a component name (`server-01/web`) or a host (`server-01`).
pub fn select<'a>(specs: &'a [ComponentSpec], name: &str) -> Vec<&'a ComponentSpec> {
    specs
        .iter()
        .filter(|c| c.name == name || c.host == name)
        .collect()
}
