//! The store: blobs, import, atomic placement, concurrency, removal, flattening.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Barrier};

use super::*;
use crate::store::LayerSpec;
use crate::{import_config, Config, Error, Store};

fn rootfs() -> Vec<u8> {
    let mut tb = Tb::new();
    tb.dir("bin").file_mode("bin/sh", b"#!shell", 0o755).dir("etc").file("etc/hostname", b"box\n");
    tb.finish()
}

fn cmd_config() -> Config {
    let mut c = Config::default();
    c.set_cmd(Some(vec!["/bin/sh".into()]));
    c.set_env(Some(vec!["PATH=/bin".into()]));
    c
}

#[test]
fn open_creates_layout() {
    let (_d, s) = store();
    for sub in ["blobs/sha256", "layers", "tmp"] {
        let m = fs::metadata(s.root().join(sub)).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700);
    }
    assert!(Store::open(s.root()).is_ok(), "reopening is fine");
}

#[test]
fn import_rootfs_gzip() {
    let (_d, s) = store();
    let tar = rootfs();
    let img =
        s.import_rootfs(&gzip(&tar)[..], import_config(cmd_config(), "Imported from -"), &overlay_opts()).unwrap();
    assert_eq!(img.diff_ids, vec![sha256(&tar)], "diff_id is the uncompressed digest");
    assert_eq!(img.repo_tags, Vec::<String>::new());
    assert_eq!(img.size, 7 + 4);
    assert_eq!(img.blobs, vec![img.id.clone()]);
    let bytes = fs::read(s.blob_path(&img.id).unwrap()).unwrap();
    assert_eq!(sha256(&bytes), img.id, "id is the config blob digest");
    let cfg = s.read_config(&img.id).unwrap();
    assert_eq!(cfg, img.config);
    assert_eq!(cfg.config().as_ref().unwrap().cmd().as_deref(), Some(&["/bin/sh".to_owned()][..]));
    assert_eq!(cfg.rootfs().diff_ids(), &img.diff_ids);
    assert_eq!(cfg.history().as_ref().unwrap()[0].comment().as_deref(), Some("Imported from -"));
    let layer = s.layer_dir(&img.diff_ids[0]).unwrap();
    assert_eq!(fs::read(layer.join("etc/hostname")).unwrap(), b"box\n");
    assert_eq!(fs::metadata(&layer).unwrap().mode() & 0o777, 0o755);
    assert_eq!(s.layer_size(&img.diff_ids[0]).unwrap(), img.size);
    assert_clean(&s, 1, 1);

    // Importing the same content again reuses the layer and yields the same layer id.
    let again = s.import_rootfs(&tar[..], import_config(cmd_config(), "x"), &overlay_opts()).unwrap();
    assert_eq!(again.diff_ids, img.diff_ids);
    assert_clean(&s, 1, 2);
}

#[test]
fn failed_imports_leave_nothing() {
    let (_d, s) = store();
    let tar = rootfs();
    let gz = gzip(&tar);
    let mut hostile = Tb::new();
    hostile.file("ok", b"fine").file_mode("../escape", b"x", 0o644);
    let inputs: Vec<Vec<u8>> = vec![
        tar[..tar.len() / 2].to_vec(),
        tar[..512 * 3].to_vec(),
        gz[..gz.len() - 4].to_vec(),
        vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
        hostile.finish(),
        Vec::new(),
    ];
    for input in inputs {
        let r = s.import_rootfs(&input[..], import_config(Config::default(), "x"), &overlay_opts());
        assert!(r.is_err());
        assert_clean(&s, 0, 0);
    }
}

#[test]
fn blob_digest_mismatch_leaves_nothing() {
    let (_d, s) = store();
    let wrong = sha256(b"something else");
    let err = s.write_blob(&b"content"[..], Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_clean(&s, 0, 0);
    let (d, n) = s.write_blob(&b"content"[..], Some(&sha256(b"content"))).unwrap();
    assert_eq!((d.as_str(), n), (sha256(b"content").as_str(), 7));
    assert_eq!(s.read_blob(&d, 100).unwrap(), b"content");
    assert!(matches!(s.read_blob(&d, 3), Err(Error::TooLarge { .. })));
    assert_clean(&s, 0, 1);
}

#[test]
fn layer_digest_and_diff_id_are_verified() {
    let (_d, s) = store();
    let tar = rootfs();
    let gz = gzip(&tar);
    let good_blob = sha256(&gz);
    let good_diff = sha256(&tar);
    let bad = sha256(b"nope");
    let cases = [
        (Some((bad.as_str(), None)), Some(good_diff.as_str()), "digest mismatch"),
        (Some((good_blob.as_str(), Some(gz.len() as u64 + 1))), Some(good_diff.as_str()), "size mismatch"),
        (Some((good_blob.as_str(), None)), Some(bad.as_str()), "uncompressed content (diff_id): digest mismatch"),
    ];
    for (blob, diff_id, msg) in cases {
        let spec = LayerSpec { label: "t".into(), blob, diff_id };
        let err = s.ensure_layer(|| Ok(&gz[..]), spec, &overlay_opts()).err().unwrap().to_string();
        assert!(err.contains(msg), "{err}");
        assert_clean(&s, 0, 0);
    }
    let opts = UnpackOptions { keep_layer_blobs: true, ..overlay_opts() };
    let spec =
        LayerSpec { label: "t".into(), blob: Some((&good_blob, Some(gz.len() as u64))), diff_id: Some(&good_diff) };
    let done = s.ensure_layer(|| Ok(&gz[..]), spec, &opts).unwrap();
    assert_eq!(done.blob.as_deref(), Some(good_blob.as_str()));
    assert_eq!(fs::read(s.blob_path(&good_blob).unwrap()).unwrap(), gz);
    assert_clean(&s, 1, 1);

    // Present: nothing is read at all.
    let spec = LayerSpec { label: "t".into(), blob: None, diff_id: Some(&good_diff) };
    let done =
        s.ensure_layer(|| -> crate::Result<&[u8]> { panic!("must not be read") }, spec, &overlay_opts()).unwrap();
    assert_eq!(done.diff_id, good_diff);
}

#[test]
fn concurrent_imports_of_the_same_layer() {
    let (_d, s) = store();
    let mut tb = Tb::new();
    for i in 0..200 {
        tb.file(&format!("d{}/f{i}", i % 10), &vec![i as u8; 4096]);
    }
    let tar = Arc::new(tb.finish());
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (s, tar, barrier) = (s.clone(), tar.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut base = import_config(Config::default(), "x");
                base.set_created(Some("2020-01-01T00:00:00Z".into()));
                base.set_history(None);
                s.import_rootfs(&tar[..], base, &overlay_opts()).unwrap()
            })
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(images.iter().all(|i| i.id == images[0].id && i.diff_ids == images[0].diff_ids));
    let layer = s.layer_dir(&images[0].diff_ids[0]).unwrap();
    assert_eq!(names(&layer).len(), 10);
    assert_eq!(names(&layer.join("d3")).len(), 20);
    assert_clean(&s, 1, 1);
}

#[test]
fn remove_layer_and_blob() {
    let (_d, s) = store();
    let mut tb = Tb::new();
    tb.dir_mode("ro", 0o500).file_mode("ro/secret", b"s", 0o000).dir_mode("locked", 0o000);
    let img = s.import_rootfs(&tb.finish()[..], import_config(Config::default(), "x"), &overlay_opts()).unwrap();
    let diff = &img.diff_ids[0];
    assert!(s.has_layer(diff));
    s.remove_layer(diff).unwrap();
    assert!(!s.has_layer(diff));
    s.remove_layer(diff).unwrap(); // idempotent
    s.remove_blob(&img.id).unwrap();
    s.remove_blob(&img.id).unwrap();
    assert_clean(&s, 0, 0);

    for bad in ["../../etc", "sha256:../x", "sha256:ABC"] {
        assert!(matches!(s.layer_dir(bad), Err(Error::InvalidDigest(_))));
        assert!(s.remove_layer(bad).is_err());
        assert!(s.remove_blob(bad).is_err());
    }
}

#[test]
fn clean_tmp_removes_stale_entries() {
    let (_d, s) = store();
    let stale = s.root().join("tmp/layer-stale");
    fs::create_dir_all(stale.join("x")).unwrap();
    s.clean_tmp(std::time::Duration::from_secs(3600)).unwrap();
    assert!(stale.exists(), "young entries are kept");
    s.clean_tmp(std::time::Duration::ZERO).unwrap();
    assert!(!stale.exists());
}

#[test]
fn tmp_entries_of_a_dead_operation_go_at_the_next_open_whatever_their_age() {
    let (_d, s) = store();
    // A killed pull: its staging entry names a process that is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let start = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .to_string()
    };
    let killed = s.root().join(format!("tmp/layer-{dead}.1234-abc"));
    fs::create_dir_all(killed.join("usr/bin")).unwrap();
    fs::write(killed.join("usr/bin/big"), vec![0u8; 4096]).unwrap();
    // One of this very process (a pull running right now), and one of a pid that was reused
    // (same pid as ours, another start time).
    let me = std::process::id();
    let running = s.root().join(format!("tmp/blob-{me}.{}-xyz", start(me)));
    fs::write(&running, b"partial").unwrap();
    let reused = s.root().join(format!("tmp/blob-{me}.1-xyz"));
    fs::write(&reused, b"old").unwrap();
    assert!(s.tmp_size() >= 4096);
    let s2 = Store::open(s.root()).unwrap();

    assert!(!killed.exists(), "the dead operation's entry is gone at once");
    assert!(!reused.exists(), "a reused pid is not the owner");
    assert!(running.exists(), "a running operation's entry is kept");
    s2.clean_tmp(std::time::Duration::ZERO).unwrap();
    assert!(running.exists(), "whatever its age");
}

#[test]
fn flatten_applies_layers_in_order() {
    let (_d, s) = store();
    let opts = overlay_opts();
    if !user_xattrs_supported(s.root()) {
        println!("SKIP: the file system of {} does not support user xattrs", s.root().display());
        return;
    }
    let mut l1 = Tb::new();
    l1.dir("etc").file("etc/a", b"a1").file("etc/b", b"b1").dir("opt").file("opt/old", b"o");
    l1.file_mode("bin/tool", b"t", 0o4755).hardlink("bin/tool2", "bin/tool").symlink("lib", "usr/lib");
    l1.dir_mode("ro", 0o555).file("ro/f", b"f");
    let mut l2 = Tb::new();
    l2.file("etc/a", b"a2").file("etc/.wh.b", b"").dir("opt").file("opt/new", b"n").file("opt/.wh..wh..opq", b"");
    l2.file("lib/x", b"lib is a directory now");
    let mut diff_ids = Vec::new();
    for tar in [l1.finish(), l2.finish()] {
        let spec = LayerSpec { label: "t".into(), blob: None, diff_id: None };
        diff_ids.push(s.ensure_layer(|| Ok(&tar[..]), spec, &opts).unwrap().diff_id);
    }
    // The stored upper layer is an overlay lowerdir.
    let upper = s.layer_dir(&diff_ids[1]).unwrap();
    assert!(is_whiteout(&upper.join("etc/b")));

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("rootfs");
    let report = s.flatten_into(&diff_ids, &target, &opts).unwrap();
    assert_eq!(fs::read(target.join("etc/a")).unwrap(), b"a2");
    assert!(!target.join("etc/b").exists() && !is_whiteout(&target.join("etc/b")));
    assert_eq!(names(&target.join("opt")), vec!["new"]);
    assert_eq!(xattr::get(target.join("opt"), "user.overlay.opaque").unwrap(), None);
    let tool = fs::metadata(target.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(tool.ino(), fs::metadata(target.join("bin/tool2")).unwrap().ino());
    assert!(target.join("lib").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::metadata(target.join("ro")).unwrap().mode() & 0o777, 0o555);
    assert_eq!(fs::read(target.join("ro/f")).unwrap(), b"f");
    assert_eq!(report.whiteouts, 2);

    assert!(matches!(s.flatten_into(&[sha256(b"missing")], &target, &opts), Err(Error::NotFound(_))));
}
