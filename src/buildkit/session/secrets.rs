//! Secrets: BuildKit asks for a secret by id while a `RUN --mount=type=secret` step runs.
//!
//! kiln keeps only where each secret comes from (a file path or an environment variable's name)
//! and reads the value at the moment BuildKit asks, straight into the reply. A value is never
//! held by kiln between calls, logged, or put into an error message. Parsing `--secret` lives in
//! `build::secrets`; this module only serves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{
    Secrets as SecretsApi, SecretsServer,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};

/// BuildKit's limit on one secret (`secretsprovider.MaxSecretSize`).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where a secret's value is read from. Holds a location, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// The secrets one build exposes, by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_id: Arc<BTreeMap<String, SecretSource>>,
}

impl Secrets {
    /// Later entries with the same id replace earlier ones, as buildx's do.
    pub fn new(entries: impl IntoIterator<Item = (String, SecretSource)>) -> Self {
        Secrets {
            by_id: Arc::new(entries.into_iter().collect()),
        }
    }
}

pub struct SecretsService {
    secrets: Secrets,
}

pub fn server(secrets: Secrets) -> SecretsServer<SecretsService> {
    SecretsServer::new(SecretsService { secrets })
}

/// Reads a secret's value. Errors name the secret and its location, never its content.
async fn read_value(id: &str, source: &SecretSource) -> Result<Vec<u8>, Status> {
    let data = match source {
        // As buildx: a variable that disappeared after the flags were checked is empty.
        SecretSource::Env(var) => std::env::var_os(var)
            .map(|v| v.into_encoded_bytes())
            .unwrap_or_default(),
        SecretSource::File(path) => {
            let meta = tokio::fs::metadata(path).await.map_err(|e| {
                Status::internal(format!(
                    "secret {id}: failed to stat {}: {e}",
                    path.display()
                ))
            })?;
            if meta.len() > MAX_SECRET_SIZE {
                return Err(Status::invalid_argument(format!(
                    "invalid secret size {}",
                    meta.len()
                )));
            }
            tokio::fs::read(path).await.map_err(|e| {
                Status::internal(format!(
                    "secret {id}: failed to read {}: {e}",
                    path.display()
                ))
            })?
        }
    };
    if data.len() as u64 > MAX_SECRET_SIZE {
        return Err(Status::invalid_argument(format!(
            "invalid secret size {}",
            data.len()
        )));
    }
    Ok(data)
}

#[tonic::async_trait]
impl SecretsApi for SecretsService {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        // BuildKit turns NotFound into "secret <id>: not found" (or skips an optional mount).
        let source = self
            .secrets
            .by_id
            .get(&id)
            .ok_or_else(|| Status::not_found("not found"))?;
        tracing::debug!("serving secret {id:?}");
        let data = read_value(&id, source).await?;
        Ok(Response::new(GetSecretResponse { data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_by_id_and_reports_unknown_ids_as_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, b"file-value").unwrap();
        std::env::set_var("KILN_TEST_SECRET_SERVE", "env-value");
        let svc = SecretsService {
            secrets: Secrets::new([
                ("f".to_string(), SecretSource::File(file)),
                (
                    "e".to_string(),
                    SecretSource::Env("KILN_TEST_SECRET_SERVE".into()),
                ),
            ]),
        };
        let get = |id: &str| {
            svc.get_secret(Request::new(GetSecretRequest {
                id: id.into(),
                ..Default::default()
            }))
        };
        assert_eq!(get("f").await.unwrap().into_inner().data, b"file-value");
        assert_eq!(get("e").await.unwrap().into_inner().data, b"env-value");
        let missing = get("nope").await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn oversized_files_are_refused_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let err = read_value("big", &SecretSource::File(file))
            .await
            .unwrap_err();
        assert!(err.message().contains("invalid secret size"));
        assert!(!err.message().contains("xxx"));
    }
}
