//! Resolving paths inside a root filesystem without escaping it through symlinks.

use std::path::{Component, Path, PathBuf};

/// Joins `unsafe_path` onto `root` the way `filepath-securejoin` does: every symlink met on
/// the way is resolved *relative to `root`*, and `..` never climbs above it. The result is a
/// path under `root` (its last components may not exist yet).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<std::ffi::OsString> = components(unsafe_path);
    pending.reverse();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    // A loop: stop resolving, the caller's open will fail with ELOOP-like errors.
                    resolved = candidate;
                    continue;
                }
                let Ok(target) = std::fs::read_link(&full) else {
                    resolved = candidate;
                    continue;
                };
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut t = components(&target);
                t.reverse();
                pending.extend(t);
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("a/up")).unwrap();
        symlink("b", root.join("a/rel")).unwrap();
        assert_eq!(secure_join(root, Path::new("/abs/passwd")), root.join("etc/passwd"));
        assert_eq!(secure_join(root, Path::new("a/up/etc")), root.join("etc"));
        assert_eq!(secure_join(root, Path::new("/a/rel/x")), root.join("a/b/x"));
        assert_eq!(secure_join(root, Path::new("../../x")), root.join("x"));
        symlink("loop", root.join("loop")).unwrap();
        assert!(secure_join(root, Path::new("loop/x")).starts_with(root));
    }
}
