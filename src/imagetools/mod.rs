//! `imagetools`: work on images already in a registry, as `docker buildx imagetools` does:
//! merge manifests into an index and push it (`create`), and show what a reference holds
//! (`inspect`).
//!
//! This module decides what to fetch, merge and copy, and how to print it like buildx; talking
//! to registries is `registry`'s job. The build fan-out merges per-platform results through
//! [`create`].

mod create;
mod gojson;
mod inspect;
mod tabwriter;
mod template;

// `Created` and `Source` are the merge API the multi-node build fan-out calls.
#[allow(unused_imports)]
pub use create::{
    create, create_for_platforms, merge_documents, sources_from_args, CreateRequest, Created,
    Document, PushEvent, Source,
};
pub use inspect::{inspect, Output};
pub use template::Template;
