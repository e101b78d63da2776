//! Unpacking as uid 0 in a user namespace that maps a single id (what a rootless
//! engine does): owners outside the map are squashed to 0:0, device nodes are skipped,
//! whiteouts and `user.overlay.opaque` still work.
//!
//! The test re-runs this test binary under `unshare --user --map-root-user`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use tar::EntryType;

use super::*;
use crate::unpack_layer;

const CHILD_ENV: &str = "COVE_IMAGE_USERNS_CHILD";

#[test]
fn unpack_in_single_id_user_namespace() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--"])
        .arg(&exe)
        .args(["--exact", "tests::userns::child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            println!("SKIP: cannot run unshare(1): {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        println!("SKIP: user namespaces are not available: {}", stderr.trim());
        return;
    }
    if stdout.contains("SKIP:") {
        println!("{}", stdout.lines().find(|l| l.contains("SKIP:")).unwrap_or_default());
        return;
    }
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("userns child ok"), "child did not run:\n{stdout}\n{stderr}");
}

#[test]
#[ignore = "run by unpack_in_single_id_user_namespace inside `unshare -r`"]
fn child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let map = fs::read_to_string("/proc/self/uid_map").unwrap();
    assert_eq!(map.split_whitespace().nth(2), Some("1"), "expected a single-id map: {map}");
    assert!(is_root(), "uid 0 in the namespace");

    let base = tempfile::tempdir().unwrap();
    let t = base.path().join("layer");
    fs::create_dir(&t).unwrap();
    if !user_xattrs_supported(&t) {
        println!("SKIP: the file system of {} does not support user xattrs", t.display());
        return;
    }
    let mut tb = Tb::new();
    tb.raw("bin/ping", EntryType::Regular, b"elf", "", 0o4755, 1234, 1234);
    tb.raw("home/user", EntryType::Directory, b"", "", 0o700, 1000, 1000);
    tb.raw("etc/shadow", EntryType::Regular, b"s", "", 0o640, 0, 42);
    tb.device("dev/null", EntryType::Char, 1, 3);
    tb.file("etc/.wh.old", b"").dir("opt").file("opt/.wh..wh..opq", b"");
    let report = unpack_layer(&tb.finish()[..], &t, &overlay_opts()).unwrap();

    let ping = fs::metadata(t.join("bin/ping")).unwrap();
    assert_eq!((ping.uid(), ping.gid()), (0, 0), "squashed to 0:0");
    assert_eq!(ping.mode() & 0o7777, 0o4755, "setuid kept after the squash");
    assert_eq!(fs::metadata(t.join("home/user")).unwrap().uid(), 0);
    assert_eq!(fs::metadata(t.join("etc/shadow")).unwrap().gid(), 0);
    assert_eq!(report.chown_squashed, 3);
    assert_eq!(report.devices_skipped, 1, "mknod of a real device is refused in a user namespace");
    assert!(!t.join("dev/null").exists());
    assert!(is_whiteout(&t.join("etc/old")), "0/0 whiteouts are allowed unprivileged");
    assert_eq!(xattr::get(t.join("opt"), "user.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    fs::set_permissions(&t, fs::Permissions::from_mode(0o755)).unwrap();
    println!("userns child ok");
}
