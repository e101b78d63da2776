//! sha256 digests: validation, formatting, and a hashing reader.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

const PREFIX: &str = "sha256:";

/// Checks that `digest` is `sha256:<64 lowercase hex>` and returns the hex part.
///
/// Every digest that comes from outside (archives, callers, the database) goes through
/// this before it becomes part of a path, so a digest can never name `../x`.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix(PREFIX).ok_or_else(|| Error::InvalidDigest(digest.to_owned()))?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(Error::InvalidDigest(digest.to_owned()))
    }
}

/// `sha256:0123456789ab…` for messages.
pub(crate) fn short(digest: &str) -> String {
    match digest_hex(digest) {
        Ok(hex) => format!("{PREFIX}{}…", &hex[..12]),
        Err(_) => digest.to_owned(),
    }
}

/// The digest of a byte slice.
pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(Sha256::digest(bytes)))
}

/// A reader that hashes (and optionally copies) everything read through it, counts the
/// bytes, and tracks how many zero bytes the stream read so far ends with (a tar stream
/// that ends cleanly ends with a zero block).
pub(crate) struct Hashing<'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    trailing_zeros: u64,
    tee: Option<&'a mut dyn Write>,
}

impl<'a, R: Read> Hashing<'a, R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0, trailing_zeros: 0, tee: None }
    }

    /// Also write every byte read to `tee` (a blob being stored).
    pub(crate) fn with_tee(inner: R, tee: Option<&'a mut dyn Write>) -> Self {
        let mut h = Self::new(inner);
        h.tee = tee;
        h
    }

    pub(crate) fn trailing_zeros(&self) -> u64 {
        self.trailing_zeros
    }

    /// Reads the rest of the stream (so the digest covers all of it).
    pub(crate) fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// The digest of everything read so far, and its length.
    pub(crate) fn finish(self) -> (String, u64) {
        (format!("{PREFIX}{}", hex::encode(self.hasher.finalize())), self.count)
    }
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        self.hasher.update(data);
        self.count += n as u64;
        match data.iter().rposition(|b| *b != 0) {
            Some(last) => self.trailing_zeros = (n - last - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        if let Some(tee) = self.tee.as_mut() {
            // Said as a write: a full disk here is not a broken archive.
            tee.write_all(data).map_err(|e| io::Error::new(e.kind(), format!("write the layer's blob: {e}")))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_hex(&good).unwrap(), "a".repeat(64));
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            "a".repeat(64),
            String::new(),
        ] {
            assert!(digest_hex(&bad).is_err(), "{bad} accepted");
        }
        assert_eq!(short(&good), "sha256:aaaaaaaaaaaa…");
    }

    #[test]
    fn hashing_reader() {
        let data = b"hello\0\0\0";
        let mut copy = Vec::new();
        let mut h = Hashing::with_tee(&data[..], Some(&mut copy));
        h.drain().unwrap();
        assert_eq!(h.trailing_zeros(), 3);
        let (d, n) = h.finish();
        assert_eq!(n, 8);
        assert_eq!(d, sha256_of(data));
        assert_eq!(copy, data);
    }
}
