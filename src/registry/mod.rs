//! An OCI distribution (registry) client: image references, manifests and blobs over HTTP, with
//! Docker's credentials.
//!
//! This module owns talking to registries: parsing references, authenticating (Basic and the
//! Bearer token flow), fetching and pushing manifests, checking, mounting and uploading blobs.
//! It does not decide what to copy where; `imagetools` does (and the build fan-out through it).

mod auth;
mod client;
pub mod oci;
mod reference;
mod retry;
mod stream;

pub use client::{Client, Mount};
pub use oci::{Descriptor, Index, Platform};
pub use reference::{Digest, Reference, Repository};

/// A registry operation that failed, worded for the user. Never carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: not found")]
    NotFound(String),
    #[error(
        "{0} requires authentication and Docker's config has no credentials for it \
         (run `docker login {0}`)"
    )]
    NoCredentials(String),
    #[error("{registry}: authentication failed: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("reading credentials for {registry}: {detail}")]
    Credentials { registry: String, detail: String },
    #[error("{what}: {status}{detail}")]
    Status {
        what: String,
        status: http::StatusCode,
        detail: String,
    },
    #[error("{registry}: {what} is larger than {}; refusing to read more", size(*limit))]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("{registry}: giving up after {attempts} attempts: {last}")]
    Retries {
        registry: String,
        attempts: u32,
        last: String,
    },
    #[error("{registry}: timed out: {detail}")]
    Timeout { registry: String, detail: String },
    #[error("cannot reach {registry}: {detail}")]
    Connect { registry: String, detail: String },
    #[error("{registry}: {detail}")]
    Protocol { registry: String, detail: String },
    #[error("{what}: content does not match its digest")]
    DigestMismatch { what: String },
    #[error("{0}")]
    Invalid(String),
}

/// `4 MiB`, `64 KiB`, or bytes when neither divides evenly.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
