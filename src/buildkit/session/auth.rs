//! Auth: BuildKit asks kiln for registry credentials, which come from Docker's config.
//!
//! Token flows are left to the daemon (answering `Unimplemented` makes BuildKit fetch tokens
//! itself with the credentials served here), so secrets never have to be held longer than one call.

use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

pub struct DockerConfigAuth;

pub fn server() -> AuthServer<DockerConfigAuth> {
    AuthServer::new(DockerConfigAuth)
}

#[tonic::async_trait]
impl Auth for DockerConfigAuth {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let creds = tokio::task::spawn_blocking(move || crate::dockercfg::credentials_for(&host))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        Ok(Response::new(match creds {
            Some(c) => CredentialsResponse {
                username: c.username,
                secret: c.secret,
            },
            None => CredentialsResponse::default(),
        }))
    }

    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("kiln lets the daemon fetch tokens"))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("kiln has no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("kiln has no token authority"))
    }
}
