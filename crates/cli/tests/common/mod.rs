//! What the end-to-end test binaries (e2e.rs, registry.rs) share: skips that are counted and
//! printed (`SKIP:` lines, CI counts them; `COVE_REQUIRE_ALL=1` turns one into a failure), the
//! binary under test, the test image, and the check that a command succeeded.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

pub static SKIPS: AtomicUsize = AtomicUsize::new(0);

pub fn skip(why: &str) {
    if std::env::var("COVE_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("required test would skip: {why}");
    }
    SKIPS.fetch_add(1, Ordering::SeqCst);
    eprintln!("SKIP: {why}");
    println!("SKIP: {why}");
}

/// `COVE_BIN`, or the binary cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("COVE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cove")))
}

/// `COVE_TEST_ROOTFS` (a tarball from scripts/make-rootfs.sh), if it exists.
pub fn rootfs() -> Option<PathBuf> {
    std::env::var_os("COVE_TEST_ROOTFS").map(PathBuf::from).filter(|p| p.exists())
}

/// Where tests make their temporary directories (`COVE_TEST_TMP`).
pub fn tmp_base() -> PathBuf {
    std::env::var_os("COVE_TEST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// Asserts that `cove args` succeeded and returns its stdout.
pub fn stdout_of_success(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "cove {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
