//! Running a whole stack on one machine (or one host's share of it).
//!
//! [`components`] turns a topology into the processes to run; [`Supervisor`]
//! starts each as its own OS process (`webinfra run ROLE --host H`), records
//! how each one ends and stops them in order; [`control`] exposes it on a
//! unix socket in the state dir so `status`, `start`, `stop` and `down` work
//! from another shell; [`health`] probes each component's `/healthz`.

pub mod components;
pub mod control;
pub use webinfra_proxy::probe as health;
mod supervisor;

pub use components::{ComponentSpec, Role};
pub use supervisor::{ProcessState, Supervisor};
