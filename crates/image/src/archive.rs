//! Where `load` reads image archives from: a tar file (indexed once, then read by
//! offset) or a directory. Members are looked up by name in an index built from the
//! archive, never by joining archive-supplied names to a host path.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{format_err, tar_err, Error, Result};

/// A set of named members (files) of an image archive.
pub(crate) trait Source {
    /// Opens member `name` (a relative `/`-separated path).
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>>;
    fn exists(&self, name: &str) -> bool;
    /// What this is, for messages.
    fn describe(&self) -> &str;
}

/// Reads at most `limit` bytes of member `name`; more is an error (metadata is small,
/// and we never read unbounded metadata).
pub(crate) fn read_limited(src: &dyn Source, name: &str, limit: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    src.open(name)?
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::Io { context: format!("{}: read {name:?}", src.describe()), source })?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge { what: format!("{}: {name:?}", src.describe()), limit });
    }
    Ok(buf)
}

/// Normalises a member name: drops `.` and empty components; `..` pops (and may not
/// climb above the archive root). `None` for names that escape.
fn clean(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Symlink(String),
    Hardlink(String),
}

/// A tar archive on disk: members are found through an index and read with `pread`.
pub(crate) struct TarSource {
    file: File,
    members: HashMap<String, Member>,
    describe: String,
}

impl TarSource {
    pub(crate) fn open(path: &Path, describe: String) -> Result<TarSource> {
        let file =
            File::open(path).map_err(|source| Error::Io { context: format!("open {}", path.display()), source })?;
        let len =
            file.metadata().map_err(|source| Error::Io { context: format!("stat {}", path.display()), source })?.len();
        let read_err = |source| Error::Io { context: format!("{describe}: read archive"), source: tar_err(source) };
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            for entry in archive.entries_with_seek().map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let raw = entry.path_bytes();
                let Some(name) = std::str::from_utf8(&raw).ok().and_then(clean) else {
                    continue; // not a name any manifest can refer to
                };
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let offset = entry.raw_file_position();
                        let size = entry.size();
                        if offset.checked_add(size).is_none_or(|end| end > len) {
                            return Err(format_err(describe, format!("member {name:?} is truncated")));
                        }
                        Member::File { offset, size }
                    }
                    tar::EntryType::Symlink => {
                        let Some(target) = entry.link_name_bytes() else {
                            continue;
                        };
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let base = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        match clean(&format!("{base}/{target}")) {
                            Some(t) if !target.starts_with('/') => Member::Symlink(t),
                            _ => continue,
                        }
                    }
                    tar::EntryType::Link => {
                        let Some(target) = entry.link_name_bytes() else {
                            continue;
                        };
                        match clean(&String::from_utf8_lossy(&target)) {
                            Some(t) => Member::Hardlink(t),
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                members.insert(name, member);
            }
        }
        Ok(TarSource { file, members, describe })
    }

    fn resolve(&self, name: &str) -> Result<(u64, u64)> {
        let mut cur = clean(name).ok_or_else(|| Error::NotFound(format!("{}: {name:?}", self.describe)))?;
        for _ in 0..16 {
            match self.members.get(&cur) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Symlink(t) | Member::Hardlink(t)) => cur = t.clone(),
                None => break,
            }
        }
        Err(Error::NotFound(format!("{}: {name:?}", self.describe)))
    }
}

impl Source for TarSource {
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let (offset, size) = self.resolve(name)?;
        Ok(Box::new(Region { file: &self.file, pos: offset, end: offset + size }))
    }

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_ok()
    }

    fn describe(&self) -> &str {
        &self.describe
    }
}

/// A byte range of a file, read with `pread` (no shared seek position).
struct Region<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive member is truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A directory (an OCI image layout, or an extracted docker-archive). Names must stay
/// inside it; symlinks inside the directory are followed (it is the caller's own
/// directory, and we only read from it).
pub(crate) struct DirSource {
    root: PathBuf,
    describe: String,
}

impl DirSource {
    pub(crate) fn new(root: &Path) -> DirSource {
        DirSource { root: root.to_path_buf(), describe: root.display().to_string() }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return None;
        }
        Some(self.root.join(name))
    }
}

impl Source for DirSource {
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let path = self.path(name).ok_or_else(|| Error::NotFound(format!("{}: {name:?}", self.describe)))?;
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("{}: {name:?}", self.describe)))
            }
            Err(source) => Err(Error::Io { context: format!("open {path:?}"), source }),
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).is_some_and(|p| p.is_file())
    }

    fn describe(&self) -> &str {
        &self.describe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(clean("./a/b").as_deref(), Some("a/b"));
        assert_eq!(clean("a/../b").as_deref(), Some("b"));
        assert_eq!(clean("../b"), None);
        assert_eq!(clean("/manifest.json").as_deref(), Some("manifest.json"));
    }
}
