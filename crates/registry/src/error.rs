//! The error type of the registry crate.

/// Registry errors; each prints as one line naming the registry or object concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry could not be reached or the connection broke.
    #[error("{registry}: {message}")]
    Transport { registry: String, message: String },
    /// The registry answered with an error status.
    #[error("{what}: {status}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status { what: String, status: u16, message: Option<String> },
    /// Credentials were refused or are missing.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{what}: larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    /// Malformed input: a reference, a manifest, a challenge.
    #[error("{0}")]
    Invalid(String),
    /// Valid input we do not handle (a media type, a platform).
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// One line for a transport failure ("connection refused", "timed out", ...).
pub(crate) fn transport(registry: &str, e: ureq::Error) -> Error {
    let message = match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    };
    Error::Transport { registry: registry.to_owned(), message }
}
