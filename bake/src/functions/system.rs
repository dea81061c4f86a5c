//! Path functions and `homedir`: the only functions that look outside the bake files (the
//! user's home directory), as buildx's do.

use hcl::Value;

use super::value::str_of;
use super::FuncError;
use crate::gopath::clean_path;

type R = Result<Value, FuncError>;

/// Go's `path.Base`.
pub fn basename(args: Vec<Value>) -> R {
    let p = str_of(&args[0]);
    if p.is_empty() {
        return Ok(Value::String(".".into()));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Value::String("/".into()));
    }
    let base = trimmed.rsplit('/').next().unwrap_or(trimmed);
    Ok(Value::String(base.to_string()))
}

/// Go's `path.Dir`.
pub fn dirname(args: Vec<Value>) -> R {
    let p = str_of(&args[0]);
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    Ok(Value::String(clean_path(dir)))
}

/// Go's `os.UserHomeDir` (`$HOME`), then the user database, then buildx's fallback (the parent
/// of the Docker config directory).
pub fn homedir(_args: Vec<Value>) -> R {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Ok(Value::String(home.to_string_lossy().into_owned()));
    }
    #[allow(deprecated)]
    if let Some(home) = std::env::home_dir().filter(|h| !h.as_os_str().is_empty()) {
        return Ok(Value::String(home.to_string_lossy().into_owned()));
    }
    let config = std::env::var("DOCKER_CONFIG").unwrap_or_else(|_| "/.docker".into());
    let parent = std::path::Path::new(&config)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    Ok(Value::String(parent))
}
