//! Reading image files through the merged layers ([`crate::ImageFs`]) with hostile layers:
//! symlinks to the host's root and /proc, loops, `..` chains, whiteouts and opaque
//! directories, and symlinks in one layer to files of another.

use std::path::PathBuf;

use super::{overlay_opts, user_xattrs_supported, Tb};
use crate::{unpack_layer, Error, ImageFs};

const LIMIT: u64 = 1 << 20;

/// Unpacks each layer (bottom-most first) into its own directory; returns the image.
fn image(layers: &[Vec<u8>]) -> (tempfile::TempDir, ImageFs) {
    let base = tempfile::tempdir().unwrap();
    let mut dirs = vec![];
    for (i, l) in layers.iter().enumerate() {
        let d = base.path().join(format!("l{i}"));
        std::fs::create_dir(&d).unwrap();
        unpack_layer(&l[..], &d, &overlay_opts()).unwrap();
        dirs.push(d);
    }
    dirs.reverse();
    let fs = ImageFs::open(&dirs).unwrap();
    (base, fs)
}

fn read(fs: &ImageFs, p: &str) -> Option<String> {
    fs.read(p, LIMIT).unwrap().map(|b| String::from_utf8(b).unwrap())
}

fn err(fs: &ImageFs, p: &str) -> String {
    match fs.read(p, LIMIT) {
        Err(e @ Error::ImagePath { .. }) => e.to_string(),
        other => panic!("{p}: expected an error, got {other:?}"),
    }
}

fn base_layer() -> Vec<u8> {
    let mut tb = Tb::new();
    tb.dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("usr")
        .dir("usr/lib")
        .file("usr/lib/passwd", b"lower\n")
        .file("etc/gone", b"g")
        .dir("d")
        .file("d/a", b"a");
    tb.finish()
}

/// A file on the host that no image lookup may ever reach.
fn host_secret() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("secret");
    std::fs::write(&p, "TOPSECRET\n").unwrap();
    (d, p)
}

#[test]
fn symlinks_to_the_hosts_root_stay_in_the_image() {
    let (_h, secret) = host_secret();
    let s = secret.to_str().unwrap();
    let mut tb = Tb::new();
    tb.symlink("x", "/")
        .dir("etc")
        .symlink("etc/passwd", &format!("/x{s}"))
        .symlink("etc/group", &format!("../../../../../../../..{s}"))
        .symlink("etc/environ", "/x/proc/self/environ")
        .symlink("etc/shadow", "/etc/../x/../../etc/host-shadow")
        .symlink("hostroot", "x/x/x/x");
    let (_d, fs) = image(&[base_layer(), tb.finish()]);
    assert_eq!(read(&fs, "/etc/passwd"), None);
    assert_eq!(read(&fs, "etc/group"), None);
    assert_eq!(read(&fs, "/etc/environ"), None);
    assert_eq!(read(&fs, "/etc/shadow"), None);
    assert_eq!(read(&fs, &format!("/hostroot{s}")), None);
    assert_eq!(read(&fs, &format!("/x/../..{s}")), None);
    // Through x -> / the image's own files are found.
    assert_eq!(read(&fs, "/x/x/usr/lib/passwd").as_deref(), Some("lower\n"));
}

#[test]
fn loops_and_long_chains_fail_cleanly() {
    let mut tb = Tb::new();
    tb.dir("etc").symlink("etc/passwd", "/etc/passwd").symlink("etc/a", "b").symlink("etc/b", "a").symlink("self", ".");
    // A chain of 41 links: one more than the limit.
    for i in 0..41 {
        tb.symlink(&format!("c{i}"), &format!("c{}", i + 1));
    }
    tb.file("c41", b"end of chain\n");
    let (_d, fs) = image(&[base_layer(), tb.finish()]);
    assert!(err(&fs, "/etc/passwd").contains("too many levels of symbolic links"));
    assert!(err(&fs, "/etc/a").contains("too many levels of symbolic links"));
    assert!(err(&fs, "/c0").contains("too many levels of symbolic links"));
    assert_eq!(read(&fs, "/c2").as_deref(), Some("end of chain\n"), "39 links are fine");
    let deep = format!("/{}etc/gone", "self/".repeat(41));
    assert!(err(&fs, &deep).contains("too many levels"));
    assert_eq!(read(&fs, &format!("/{}etc/gone", "self/".repeat(40))).as_deref(), Some("g"));
}

#[test]
fn dotdot_never_climbs_above_the_root() {
    let mut tb = Tb::new();
    tb.dir("etc")
        .symlink("etc/passwd", "../../../../../usr/lib/passwd")
        .symlink("lib", "usr/lib")
        .dir("etc/sub")
        .symlink("etc/sub/up", "../../../..");
    let (_d, fs) = image(&[base_layer(), tb.finish()]);
    assert_eq!(read(&fs, "/etc/passwd").as_deref(), Some("lower\n"));
    assert_eq!(read(&fs, "/../../../usr/lib/passwd").as_deref(), Some("lower\n"));
    assert_eq!(read(&fs, "/etc/sub/up/usr/lib/passwd").as_deref(), Some("lower\n"));
    // `..` after a symlink applies to where the link led (usr/lib/.. = usr), not lexically.
    assert_eq!(read(&fs, "/lib/../lib/passwd").as_deref(), Some("lower\n"));
    assert_eq!(read(&fs, "/lib/../etc/passwd"), None);
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_files() {
    let mut tb = Tb::new();
    tb.file("etc/.wh.gone", b"")
        .dir("d")
        .file("d/.wh..wh..opq", b"")
        .file("d/b", b"b")
        .file("usr/lib/.wh.passwd", b"")
        .symlink("etc/via", "/usr/lib/passwd");
    let l2 = tb.finish();
    let (d, fs) = image(&[base_layer(), l2]);
    if !user_xattrs_supported(d.path()) {
        println!("SKIP: the file system of {} does not support user xattrs", d.path().display());
        return;
    }
    assert_eq!(read(&fs, "/etc/gone"), None);
    assert_eq!(read(&fs, "/d/a"), None, "opaque directory");
    assert_eq!(read(&fs, "/d/b").as_deref(), Some("b"));
    assert_eq!(read(&fs, "/etc/via"), None, "a symlink to a whited-out file");
    assert_eq!(read(&fs, "/etc/passwd").as_deref(), Some("root:x:0:0::/root:/bin/sh\n"), "the rest of etc is merged");
}

#[test]
fn an_upper_symlink_finds_a_lower_layers_file() {
    let mut l2 = Tb::new();
    l2.dir("etc").symlink("etc/passwd", "../usr/lib/passwd");
    let mut l3 = Tb::new();
    l3.symlink("x", "/").dir("etc").file("etc/hostname", b"h\n");
    let (_d, fs) = image(&[base_layer(), l2.finish(), l3.finish()]);
    assert_eq!(read(&fs, "/etc/passwd").as_deref(), Some("lower\n"));
    assert_eq!(read(&fs, "/x/etc/passwd").as_deref(), Some("lower\n"));
    assert_eq!(read(&fs, "/etc/hostname").as_deref(), Some("h\n"));
    assert_eq!(read(&fs, "/etc/nothing"), None);
}

#[test]
fn directories_special_files_and_size() {
    let mut tb = Tb::new();
    tb.dir("usr/lib/passwd")
        .device("fifo", tar::EntryType::Fifo, 0, 0)
        .file("big", &[b'x'; 100])
        .file("etc/passwd/x", b"");
    let (_d, fs) = image(&[base_layer(), tb.finish()]);
    assert!(err(&fs, "/usr/lib/passwd").contains("is a directory"), "an upper directory hides the lower file");
    assert!(err(&fs, "/fifo").contains("not a regular file"), "never opened, so never blocks");
    assert!(matches!(fs.read("/big", 99), Err(Error::ImagePath { .. })));
    assert_eq!(fs.read("/big", 100).unwrap().unwrap().len(), 100);
    assert_eq!(read(&fs, "/d/a/x"), None, "a file in a parent position");
    assert!(err(&fs, "/").contains("is a directory"));
}
