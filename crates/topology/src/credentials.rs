//! Database credentials of a stack, generated once and kept in the state dir.
//!
//! Three MariaDB users, each with only the privileges its job needs: the
//! application (DML and schema changes on the application schema), replication
//! (`REPLICATION SLAVE`) and monitoring (read-only status). Their passwords
//! live in `<state-dir>/credentials.json` (mode 0600). To run a stack across
//! several machines, copy that file to each machine's state dir.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The application's MariaDB user.
pub const APP_USER: &str = "webinfra_app";
/// The replication user replicas connect as.
pub const REPL_USER: &str = "webinfra_repl";
/// The monitoring user the database supervisor queries status with.
pub const MONITOR_USER: &str = "webinfra_monitor";

/// Passwords of the stack's MariaDB users.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Password of [`APP_USER`].
    pub app_password: String,
    /// Password of [`REPL_USER`].
    pub repl_password: String,
    /// Password of [`MONITOR_USER`].
    pub monitor_password: String,
}

impl Credentials {
    /// Reads `<state_dir>/credentials.json`, creating it with fresh random
    /// passwords if it does not exist. Safe when several processes race.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Credentials> {
        let path = state_dir.join("credentials.json");
        std::fs::create_dir_all(state_dir)?;
        let fresh = Credentials {
            app_password: password(),
            repl_password: password(),
            monitor_password: password(),
        };
        let tmp = state_dir.join(format!(".credentials.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(serde_json::to_string_pretty(&fresh)?.as_bytes())?;
            f.sync_all()?;
        }
        // hard_link fails if the file exists: the first writer wins, atomically.
        let _ = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        let text = std::fs::read_to_string(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// 32 random alphanumeric characters: no quoting issues in SQL or config files.
fn password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("webinfra-cred-{}", std::process::id()));
        let a = Credentials::load_or_create(&dir).unwrap();
        let b = Credentials::load_or_create(&dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.app_password.len(), 32);
        assert_ne!(a.app_password, a.repl_password);
        let mode = std::fs::metadata(dir.join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
