//! The API's bearer token: read from a file, created 0600 with 32 random bytes (hex) on first
//! start, and refused if others can read it.

use std::{
    fs::OpenOptions,
    io::{Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// Why the token is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} is readable by others (mode {mode:o}): `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("token file {path} is empty: delete it and the agent writes a new one")]
    Empty { path: String },
}

/// Reads the token at `path`, creating the file (and its directory) first if it is absent.
pub fn load_or_create(path: &Path) -> Result<String, TokenError> {
    let shown = path.display().to_string();
    let io = |source| TokenError::Io {
        path: shown.clone(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            // Another process created it between the check and now: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed { path: shown, mode });
    }
    let token = std::fs::read_to_string(path)
        .map_err(io)?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(TokenError::Empty { path: shown });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.token");
        let t = load_or_create(&path).unwrap();
        assert_eq!(t.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), t);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Exposed { .. })
        ));
    }
}
