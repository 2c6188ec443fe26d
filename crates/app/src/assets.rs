//! The application's static files, built into the binary. The web servers
//! serve them from disk: [`write_to`] puts them in a directory, rewriting a
//! file only when its content changed so `ETag`s survive restarts.

use std::path::Path;

/// (path below `/static/`, content).
pub const ASSETS: &[(&str, &[u8])] = &[("style.css", include_bytes!("../static/style.css"))];

/// Writes every asset below `dir`.
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, content) in ASSETS {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(*content) {
            std::fs::write(&path, content)?;
        }
    }
    Ok(())
}
