//! Reading a layer tar stream into [`Node`]s for the [`Applier`]. We iterate the `tar`
//! crate's entries ourselves and never call its `unpack`.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

use crate::apply::{normalize, Applier, Node, NodeKind};
use crate::compress::decompress;
use crate::digest::Hashing;
use crate::error::{format_err, tar_err, EntryError, Error, Result};

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Decompresses `raw` (by magic bytes), applies the tar stream in it, and reads it to the
/// end. Returns the digest and length of the uncompressed stream (the diff_id).
///
/// A stream that ends without the tar end-of-archive zero block is refused as truncated.
pub(crate) fn unpack_stream(raw: &mut dyn Read, applier: &mut Applier) -> Result<(String, u64)> {
    let what = format!("layer {}", applier.layer());
    let mut decoded = decompress(raw, &what)?;
    let mut diff = Hashing::new(&mut decoded);
    apply_tar(&mut diff, applier)?;
    let terminated = diff.trailing_zeros() >= 512;
    diff.drain().map_err(|source| Error::Io { context: format!("{what}: read"), source })?;
    if !terminated {
        return Err(format_err(what, "archive ends without an end-of-archive block (truncated?)"));
    }
    Ok(diff.finish())
}

/// Applies every entry of an uncompressed tar stream.
pub(crate) fn apply_tar(reader: &mut dyn Read, applier: &mut Applier) -> Result<()> {
    let read_err = |applier: &Applier, source| Error::Io {
        context: format!("layer {}: read archive", applier.layer()),
        source: tar_err(source),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| read_err(applier, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(applier, e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        match node_from_entry(&mut entry, &raw) {
            Ok(Some(node)) => applier.apply(&node, &shown, &mut entry)?,
            Ok(None) => applier.skipped(),
            Err(kind) => return Err(applier.err(shown, kind)),
        }
    }
    Ok(())
}

fn node_from_entry<R: Read>(entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Option<Node>, EntryError> {
    let header = entry.header();
    let ty = header.entry_type();
    if ty.is_pax_global_extensions() {
        return Ok(None);
    }
    let mut path = normalize(raw)?;
    let mode = header.mode().map_err(EntryError::header)?;
    let uid = header.uid().map_err(EntryError::header)?;
    let gid = header.gid().map_err(EntryError::header)?;
    let mtime = header.mtime().map_err(EntryError::header)?;
    let device = |h: &tar::Header| -> Result<(u64, u64), EntryError> {
        let major = h.device_major().map_err(EntryError::header)?.unwrap_or(0);
        let minor = h.device_minor().map_err(EntryError::header)?.unwrap_or(0);
        Ok((major.into(), minor.into()))
    };
    let mut kind = match ty {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            if raw.ends_with(b"/") {
                NodeKind::Dir // pre-POSIX archives mark directories with a trailing slash
            } else {
                NodeKind::File { size: entry.size() }
            }
        }
        tar::EntryType::Directory => NodeKind::Dir,
        tar::EntryType::Symlink => {
            let target = entry.link_name_bytes().ok_or(EntryError::SymlinkWithoutTarget)?;
            NodeKind::Symlink(OsString::from_vec(target.into_owned()))
        }
        tar::EntryType::Link => {
            let target = entry.link_name_bytes().ok_or(EntryError::LinkTargetMissing(String::new()))?;
            let comps = normalize(&target)
                .map_err(|_| EntryError::LinkEscapes(String::from_utf8_lossy(&target).into_owned()))?;
            NodeKind::Hardlink(comps)
        }
        tar::EntryType::Char => {
            let (major, minor) = device(header)?;
            NodeKind::Char { major, minor }
        }
        tar::EntryType::Block => {
            let (major, minor) = device(header)?;
            NodeKind::Block { major, minor }
        }
        tar::EntryType::Fifo => NodeKind::Fifo,
        other => {
            tracing::warn!(entry = %String::from_utf8_lossy(raw), kind = ?other, "unsupported tar entry type skipped");
            return Ok(None);
        }
    };

    if let Some(last) = path.last() {
        let name = last.as_encoded_bytes();
        if name == OPAQUE {
            path.pop();
            kind = NodeKind::Opaque;
        } else if let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX) {
            if rest.starts_with(WHITEOUT_PREFIX) {
                // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                tracing::debug!(entry = %String::from_utf8_lossy(raw), "aufs metadata skipped");
                return Ok(None);
            }
            if rest.is_empty() || rest == b"." || rest == b".." {
                return Err(EntryError::InvalidWhiteout);
            }
            let real = OsString::from_vec(rest.to_vec());
            if let Some(l) = path.last_mut() {
                *l = real;
            }
            kind = NodeKind::Whiteout;
        }
    }

    let mut xattrs = Vec::new();
    let mut mtime = (i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    if let Some(exts) = entry.pax_extensions().map_err(EntryError::header)? {
        for ext in exts {
            let ext = ext.map_err(EntryError::header)?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((OsString::from_vec(name.to_vec()), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    mtime = t;
                }
            }
        }
    }

    Ok(Some(Node { path, kind, mode, uid, gid, mtime, xattrs }))
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`.
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time(b"12.123456789123"), Some((12, 123_456_789)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
