//! Talking to image registries (the OCI distribution API): references with a default
//! registry, credentials files, bearer-token and basic auth, manifests (size-capped), blobs
//! (streamed, never buffered), blob uploads and manifest pushes.
//!
//! It owns no storage: the engine streams what [`Client::blob`] returns into the image store,
//! which verifies digests. Metadata this crate reads itself (manifests, configs, tokens,
//! error bodies) is capped, and a manifest or config is checked against its digest before it
//! is returned. HTTP and TLS come from `ureq` (blocking, rustls); no async runtime.
//!
//! ```text
//! ImageRef::parse("alpine:3.20", "docker.io") -> docker.io/library/alpine:3.20
//! Client::new(&ImageRef.registry, &Settings) -> Client        (https, or http when insecure)
//! client.manifest(repo, reference, accept) -> Fetched          (capped, digest-checked)
//! client.blob(repo, digest, size) -> impl Read                 (the caller hashes)
//! client.blob_bytes(repo, digest, limit) -> Vec<u8>            (capped, digest-checked)
//! client.blob_exists / upload_blob / put_manifest / ping
//! auth::{credentials_for, store_login, remove_login}
//! ```
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod auth;
mod client;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod manifest;
mod reference;

pub use client::{Client, Fetched, Settings};
pub use error::{Error, Result};
pub use reference::{is_loopback, ImageRef, DOCKER_HUB};

/// Manifests, indexes, configs and token responses larger than this are refused.
pub const METADATA_LIMIT: u64 = 4 * 1024 * 1024;
