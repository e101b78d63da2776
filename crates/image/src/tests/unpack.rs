//! Layer unpacking: hostile archives, file types and metadata, whiteouts.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::*;
use crate::{unpack_layer, Error, UnpackReport};

/// A fresh `<tmp>/target` directory, its parent (which must stay empty but for the
/// target), and the tempdir guard.
fn target() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let t = base.path().join("target");
    fs::create_dir(&t).unwrap();
    (base, t)
}

fn unpack(data: &[u8], target: &Path) -> crate::Result<UnpackReport> {
    unpack_layer(data, target, &overlay_opts())
}

fn assert_only_target(base: &Path) {
    assert_eq!(names(base), vec!["target"], "something was written next to the target");
}

#[test]
fn dotdot_entries_are_refused() {
    for name in ["../x", "a/../../x", "./../x", "a/.."] {
        let (base, t) = target();
        let mut tb = Tb::new();
        tb.dir("a/").file_mode(name, b"pwned", 0o644);
        let err = unpack(&tb.finish(), &t).unwrap_err();
        assert!(err.to_string().contains(&format!("entry {name:?}: path escapes the layer")), "{err}");
        assert!(matches!(err, Error::Entry { .. }));
        assert_only_target(base.path());
    }
}

#[test]
fn absolute_paths_are_stripped_to_the_layer_root() {
    let outside = tempfile::tempdir().unwrap();
    let abs = format!("{}/pwned", outside.path().display());
    let (base, t) = target();
    let mut tb = Tb::new();
    tb.file(&abs, b"data");
    unpack(&tb.finish(), &t).unwrap();
    assert!(!outside.path().join("pwned").exists());
    let inside = t.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"data");
    assert_only_target(base.path());
}

#[test]
fn entries_below_a_symlink_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let cases = [
        ("link", outside.path().display().to_string(), "link/file"),
        ("link", "../../../../../../../../../..".to_owned(), "link/tmp/file"),
        ("a/b", outside.path().display().to_string(), "a/b/c/file"),
    ];
    for (link, dest, entry) in cases {
        let (base, t) = target();
        let mut tb = Tb::new();
        tb.dir("a/").symlink(link, &dest).file(entry, b"pwned");
        let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
        assert!(err.contains(&format!("parent {link:?} is a symlink")), "{err}");
        assert!(names(outside.path()).is_empty(), "wrote through {link}");
        assert_only_target(base.path());
    }
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"orig").unwrap();
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.symlink("f", &victim.display().to_string()).file("f", b"new");
    tb.symlink("d", &outside.path().display().to_string()).dir("d");
    unpack(&tb.finish(), &t).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"orig");
    assert!(t.join("f").symlink_metadata().unwrap().is_file());
    assert_eq!(fs::read(t.join("f")).unwrap(), b"new");
    assert!(t.join("d").symlink_metadata().unwrap().is_dir());
    assert_eq!(names(outside.path()), vec!["victim"]);
}

#[test]
fn hard_links_must_stay_in_the_layer() {
    let host = fs::metadata("/etc/passwd").unwrap();

    // Absolute target: resolved inside the layer, where there is no etc/passwd.
    let (base, t) = target();
    let mut tb = Tb::new();
    tb.hardlink("h", "/etc/passwd");
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.contains("hard link target \"etc/passwd\" does not exist in the layer"), "{err}");
    assert_only_target(base.path());
    assert_eq!(names(&t), Vec::<String>::new());

    // With an etc/passwd in the layer, the link is to that one, not the host's.
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n").hardlink("h", "/etc/passwd");
    unpack(&tb.finish(), &t).unwrap();
    let h = fs::metadata(t.join("h")).unwrap();
    assert_eq!(h.ino(), fs::metadata(t.join("etc/passwd")).unwrap().ino());
    assert_ne!((h.dev(), h.ino()), (host.dev(), host.ino()));

    // `..` in the target.
    let (base, t) = target();
    let mut tb = Tb::new();
    tb.hardlink("h", "../x");
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.contains("hard link target \"../x\" escapes the layer"), "{err}");
    assert_only_target(base.path());

    // Through a symlink.
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"s").unwrap();
    let (base, t) = target();
    let mut tb = Tb::new();
    tb.symlink("d", &outside.path().display().to_string()).hardlink("h", "d/secret");
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.contains("parent \"d\" is a symlink"), "{err}");
    assert_eq!(fs::metadata(outside.path().join("secret")).unwrap().nlink(), 1);
    assert_only_target(base.path());

    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), host.nlink());
}

#[test]
fn hard_links_within_the_layer() {
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.file_mode("a", b"content", 0o640).hardlink("dir/b", "a").symlink("s", "a").hardlink("s2", "s");
    tb.dir("sub").hardlink("c", "sub");
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.contains("entry \"c\": hard link target \"sub\" is a directory"), "{err}");
    let a = fs::metadata(t.join("a")).unwrap();
    assert_eq!(a.ino(), fs::metadata(t.join("dir/b")).unwrap().ino());
    assert_eq!(a.nlink(), 2);
    // A hard link to a symlink links the symlink itself.
    let s2 = t.join("s2").symlink_metadata().unwrap();
    assert!(s2.file_type().is_symlink());
    assert_eq!(s2.ino(), t.join("s").symlink_metadata().unwrap().ino());
}

#[test]
fn truncated_archives_fail() {
    let mut tb = Tb::new();
    tb.file("a", &[7u8; 10_000]).file("b", b"second");
    let full = tb.finish();

    // Cut in the middle of file data.
    let (_base, t) = target();
    let err = unpack(&full[..5000], &t).unwrap_err().to_string();
    assert!(err.contains("truncated") || err.contains("read"), "{err}");

    // Cut exactly after an entry: no end-of-archive block.
    let one_entry = 512 + 10_240;
    let (_base, t) = target();
    let err = unpack(&full[..one_entry], &t).unwrap_err().to_string();
    assert!(err.contains("without an end-of-archive block"), "{err}");

    // Empty input.
    let (_base, t) = target();
    assert!(unpack(b"", &t).is_err());

    // Truncated gzip.
    let gz = gzip(&full);
    let (_base, t) = target();
    assert!(unpack(&gz[..gz.len() - 10], &t).is_err());

    // The whole thing is fine, plain and gzip.
    let (_base, t) = target();
    unpack(&full, &t).unwrap();
    let (_base, t) = target();
    unpack(&gz, &t).unwrap();
    assert_eq!(fs::read(t.join("b")).unwrap(), b"second");
}

#[test]
fn bad_gzip_fails() {
    let (_base, t) = target();
    let mut bad = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bad.extend_from_slice(&[0xff; 200]);
    let err = unpack(&bad, &t).unwrap_err().to_string();
    assert!(err.starts_with("layer stream: read archive:"), "{err}");

    // Corrupt checksum: found when the stream is read to its end.
    let mut tb = Tb::new();
    tb.file("a", b"x");
    let mut gz = gzip(&tb.finish());
    let n = gz.len();
    gz[n - 8] ^= 0xff;
    let (_base, t) = target();
    assert!(unpack(&gz, &t).is_err());
}

#[test]
fn modes_owners_and_times() {
    let (_base, t) = target();
    let owner = if is_root() { 1000 } else { me().0 };
    let mut tb = Tb::new();
    tb.raw("suid", EntryType::Regular, b"#!/bin/sh\n", "", 0o4755, owner, owner);
    tb.raw("other", EntryType::Regular, b"x", "", 0o600, 4321, 4321);
    tb.dir_mode("ro", 0o555).file_mode("ro/inner", b"i", 0o444);
    tb.dir_mode("locked", 0o000);
    tb.pax(&[("mtime", b"1600000000.25")]).file("precise", b"p");
    let report = unpack(&tb.finish(), &t).unwrap();

    let suid = fs::metadata(t.join("suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755, "setuid must survive chown");
    assert_eq!(suid.uid() as u64, owner);
    assert_eq!(suid.mtime(), MTIME as i64);
    let other = fs::metadata(t.join("other")).unwrap();
    if is_root() {
        assert_eq!((other.uid(), other.gid()), (4321, 4321));
        assert_eq!(report.chown_squashed, 0);
    } else {
        assert_eq!(other.uid() as u64, me().0, "unprivileged: stays ours");
        assert_eq!(report.chown_squashed, 1);
    }
    let ro = fs::metadata(t.join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert_eq!(ro.mtime(), MTIME as i64, "directory mtime is applied last");
    assert_eq!(fs::read(t.join("ro/inner")).unwrap(), b"i");
    assert_eq!(fs::metadata(t.join("locked")).unwrap().mode() & 0o7777, 0);
    let precise = fs::metadata(t.join("precise")).unwrap();
    assert_eq!((precise.mtime(), precise.mtime_nsec()), (MTIME as i64, 250_000_000));
    assert_eq!(report.bytes, 10 + 1 + 1 + 1);

    // Everything we unpacked we can remove, even read-only directories.
    fs::set_permissions(&t, fs::Permissions::from_mode(0o755)).unwrap();
    crate::fsutil::remove_tree(&t).unwrap();
    assert!(!t.exists());
}

#[test]
fn devices_and_fifos() {
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.device("dev/null", EntryType::Char, 1, 3).device("fifo", EntryType::Fifo, 0, 0);
    let report = unpack(&tb.finish(), &t).unwrap();
    assert!(fs::metadata(t.join("fifo")).unwrap().file_type().is_fifo());
    let null = t.join("dev/null").symlink_metadata();
    match null {
        Ok(m) => {
            assert!(m.file_type().is_char_device());
            assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
            assert_eq!(report.devices_skipped, 0);
        }
        Err(_) => {
            assert!(!is_root(), "root must be able to mknod");
            assert_eq!(report.devices_skipped, 1);
        }
    }
}

#[test]
fn xattrs_are_applied_filtered_and_skipped() {
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.pax(&[
        ("SCHILY.xattr.user.cove", b"v"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.trusted.cove", b"t"),
    ])
    .file("f", b"x");
    let report = unpack(&tb.finish(), &t).unwrap();
    let f = t.join("f");
    assert_eq!(xattr::get(&f, "trusted.overlay.opaque").unwrap_or(None), None);
    assert_eq!(xattr::get(&f, "user.overlay.redirect").unwrap_or(None), None);
    let user_ok = user_xattrs_supported(&t);
    if user_ok {
        assert_eq!(xattr::get(&f, "user.cove").unwrap().as_deref(), Some(&b"v"[..]));
    }
    let expected_skips = 2 + u64::from(!user_ok) + u64::from(!is_root());
    assert_eq!(report.xattrs_skipped, expected_skips);
    if is_root() {
        assert_eq!(xattr::get(&f, "trusted.cove").unwrap().as_deref(), Some(&b"t"[..]));
    }
}

#[test]
fn later_entries_replace_earlier_ones() {
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.dir("d").file("d/child", b"c").file("d", b"now a file");
    tb.file("x", b"file").dir("x").file("x/y", b"in dir");
    tb.dir("keep").file("keep/a", b"a").dir_mode("keep", 0o700).file("keep/b", b"b");
    unpack(&tb.finish(), &t).unwrap();
    assert_eq!(fs::read(t.join("d")).unwrap(), b"now a file");
    assert_eq!(fs::read(t.join("x/y")).unwrap(), b"in dir");
    assert_eq!(names(&t.join("keep")), vec!["a", "b"], "directories merge");
    assert_eq!(fs::metadata(t.join("keep")).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn implicit_parents_and_root_entry() {
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.dir_mode("./", 0o711).file("a/b/c/file", b"deep");
    unpack(&tb.finish(), &t).unwrap();
    assert_eq!(fs::read(t.join("a/b/c/file")).unwrap(), b"deep");
    assert_eq!(fs::metadata(t.join("a/b")).unwrap().mode() & 0o777, 0o755);
    assert_eq!(fs::metadata(&t).unwrap().mode() & 0o777, 0o711);

    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.symlink("./", "/etc");
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.contains("the layer root must be a directory"), "{err}");
}

#[test]
fn invalid_whiteouts_are_refused() {
    for name in [".wh..", "a/.wh..."] {
        let (_base, t) = target();
        let mut tb = Tb::new();
        tb.file(name, b"");
        let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
        assert!(err.contains("invalid whiteout name") || err.contains("escapes"), "{name}: {err}");
    }
    // aufs metadata is not content.
    let (_base, t) = target();
    let mut tb = Tb::new();
    tb.dir(".wh..wh.plnk").file(".wh..wh.aufs", b"");
    let report = unpack(&tb.finish(), &t).unwrap();
    assert_eq!(report.entries_skipped, 2);
    assert!(names(&t).is_empty());
}

fn whiteout_layer() -> Vec<u8> {
    let mut tb = Tb::new();
    tb.dir("a").file("a/new", b"n").file("a/.wh..wh..opq", b"").file(".wh.b", b"").file("c/.wh.gone", b"");
    tb.finish()
}

#[test]
fn overlay_whiteouts_userxattr() {
    let (_base, t) = target();
    if !user_xattrs_supported(&t) {
        println!("SKIP: the file system of {} does not support user xattrs", t.display());
        return;
    }
    let report = unpack(&whiteout_layer(), &t).unwrap();
    assert!(is_whiteout(&t.join("b")), "whiteout is a 0/0 char device");
    assert!(is_whiteout(&t.join("c/gone")));
    assert_eq!(xattr::get(t.join("a"), "user.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(fs::read(t.join("a/new")).unwrap(), b"n");
    assert_eq!(report.whiteouts, 3);
}

#[test]
fn overlay_whiteouts_trusted_xattr() {
    let (_base, t) = target();
    let opts = UnpackOptions { whiteouts: WhiteoutMode::Overlay { userxattr: false }, ..Default::default() };
    let result = unpack_layer(&whiteout_layer()[..], &t, &opts);
    if is_root() {
        result.unwrap();
        assert_eq!(xattr::get(t.join("a"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
        assert!(is_whiteout(&t.join("b")));
    } else {
        // trusted.* needs CAP_SYS_ADMIN: a rootless store must use userxattr.
        let err = result.unwrap_err().to_string();
        assert!(err.contains("set trusted.overlay.opaque"), "{err}");
    }
}

#[test]
fn apply_mode_deletes() {
    let (_base, t) = target();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/old"), b"o").unwrap();
    fs::write(t.join("b"), b"b").unwrap();
    fs::create_dir_all(t.join("c/gone")).unwrap();
    fs::write(t.join("c/gone/f"), b"f").unwrap();
    fs::write(t.join("keep"), b"k").unwrap();
    let report = unpack_layer(&whiteout_layer()[..], &t, &apply_opts()).unwrap();
    assert_eq!(names(&t), vec!["a", "c", "keep"]);
    assert_eq!(names(&t.join("a")), vec!["new"], "opaque keeps this layer's entries only");
    assert!(names(&t.join("c")).is_empty());
    assert_eq!(report.whiteouts, 3);
}

#[test]
fn apply_mode_replaces_lower_symlinks_but_not_own_ones() {
    let outside = tempfile::tempdir().unwrap();
    let (base, t) = target();
    std::os::unix::fs::symlink(outside.path(), t.join("lib")).unwrap();
    let mut tb = Tb::new();
    tb.file("lib/file", b"x");
    unpack_layer(&tb.finish()[..], &t, &apply_opts()).unwrap();
    assert!(t.join("lib").symlink_metadata().unwrap().is_dir(), "as overlayfs would show it");
    assert!(names(outside.path()).is_empty());

    let mut tb = Tb::new();
    tb.symlink("own", &outside.path().display().to_string()).file("own/file", b"x");
    let err = unpack_layer(&tb.finish()[..], &t, &apply_opts()).unwrap_err().to_string();
    assert!(err.contains("parent \"own\" is a symlink"), "{err}");
    assert!(names(outside.path()).is_empty());
    assert_only_target(base.path());
}

#[test]
fn errors_about_long_names_stay_short() {
    // A path 10,000 directories deep (20,000 bytes): the error names it cut in the middle,
    // one line a person can read, instead of echoing all of it.
    let (base, t) = target();
    let mut tb = Tb::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(1);
    tb.0.append_data(&mut h, format!("{}f", "d/".repeat(10_000)), &b"x"[..]).unwrap();
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
    assert!(err.contains("path has more than 256 components") && err.contains("(20001 characters)"), "{err}");
    assert_only_target(base.path());
    // A hard link whose target is long: the target is cut too.
    let (_base, t) = target();
    let mut tb = Tb::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tb.0.append_link(&mut h, "h", format!("{}x", "t/".repeat(2_000))).unwrap();
    let err = unpack(&tb.finish(), &t).unwrap_err().to_string();
    assert!(
        err.len() < 400 && err.contains("hard link target") && err.contains("(4001 characters)"),
        "{} bytes: {err}",
        err.len()
    );
}
