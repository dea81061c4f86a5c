//! Docker's client configuration: `config.json`, contexts, and registry credentials.
//! (Minimal placeholder; the builder-store work fills it in, keeping this API.)

use anyhow::Result;

/// A registry login.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Credentials for a registry host from Docker's config (`auths`, `credsStore`, `credHelpers`).
pub fn credentials_for(_host: &str) -> Result<Option<Credentials>> {
    Ok(None)
}
