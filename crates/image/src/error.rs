//! The error type of the image crate.

use std::io;

/// Errors of the image store and the layer unpacker.
///
/// Every variant carries enough context to be printed on one line, e.g.
/// `layer sha256:ab12cd34ef56…: entry "../x": path escapes the layer`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system or read error, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A digest that is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// Content whose sha256 is not the one it was announced with.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    /// Content whose length is not the one its descriptor announced.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// A layer entry that was refused or could not be written.
    #[error("layer {layer}: entry {}: {kind}", Shown(entry))]
    Entry { layer: String, entry: String, kind: EntryError },
    /// A malformed archive, manifest, index or layer stream.
    #[error("{context}: {reason}")]
    Format { context: String, reason: String },
    /// JSON metadata that does not parse.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// Metadata larger than [`crate::METADATA_LIMIT`].
    #[error("{what}: larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    /// A blob, layer or archive member that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A path of an image that cannot be read as asked (a symlink loop, not a regular file,
    /// too large), from [`crate::ImageFs`].
    #[error("image path {path}: {reason}")]
    ImagePath { path: String, reason: String },
    /// A valid input we do not handle (zstd layers, foreign layers, ...).
    #[error("{0} is not supported")]
    Unsupported(String),
}

/// Result type of the image crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one layer entry was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("path escapes the layer")]
    Escapes,
    #[error("path has more than {0} components")]
    TooDeep(usize),
    #[error("name contains a NUL byte")]
    InvalidName,
    #[error("parent {} is a symlink; refusing to follow it", Shown(.0))]
    ParentSymlink(String),
    #[error("parent {} is not a directory", Shown(.0))]
    ParentNotDir(String),
    #[error("parent {} does not exist", Shown(.0))]
    ParentMissing(String),
    #[error("the layer root must be a directory")]
    RootNotDir,
    #[error("hard link target {} escapes the layer", Shown(.0))]
    LinkEscapes(String),
    #[error("hard link target {} does not exist in the layer", Shown(.0))]
    LinkTargetMissing(String),
    #[error("hard link target {} is a directory", Shown(.0))]
    LinkToDir(String),
    #[error("hard link target {}: parent {} is a symlink; refusing to follow it", Shown(target), Shown(parent))]
    LinkThroughSymlink { target: String, parent: String },
    #[error("symlink without a target")]
    SymlinkWithoutTarget,
    #[error("invalid whiteout name")]
    InvalidWhiteout,
    #[error("file data truncated: expected {expected} bytes, got {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error("bad header: {0}")]
    Header(io::Error),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A name from an archive as errors show it: quoted, and cut in the middle when long (a
/// hostile entry may be a path of 20,000 bytes; the error stays one readable line).
pub(crate) struct Shown<'a>(pub &'a str);

/// Characters of a name kept at each end when it is cut.
const SHOWN_END: usize = 60;

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.chars().count();
        if n <= 2 * SHOWN_END + 20 {
            return write!(f, "{:?}", self.0);
        }
        let head: String = self.0.chars().take(SHOWN_END).collect();
        let tail: String = self.0.chars().skip(n - SHOWN_END).collect();
        let cut = format!("{head}…{tail}");
        write!(f, "{cut:?} ({n} characters)")
    }
}

impl EntryError {
    /// A bad header field, as the `tar` crate reports it (made one line by [`tar_err`]).
    pub(crate) fn header(source: io::Error) -> Self {
        EntryError::Header(tar_err(source))
    }

    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        EntryError::Io { op, source: source.into() }
    }
}

/// An error of the `tar` crate made one line: its messages quote header bytes as they are (a
/// path, a number field), newlines included, so control characters are escaped.
pub(crate) fn tar_err(e: io::Error) -> io::Error {
    let msg = e.to_string();
    if !msg.chars().any(char::is_control) {
        return e;
    }
    let mut escaped = String::with_capacity(msg.len());
    for c in msg.chars() {
        if c.is_control() {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    io::Error::new(e.kind(), escaped)
}

/// Shorthand for building [`Error::Io`] in `map_err`.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Shorthand for building [`Error::Format`].
pub(crate) fn format_err(context: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Format { context: context.into(), reason: reason.into() }
}
