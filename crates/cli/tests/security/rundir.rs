//! Security regression tests (issue 21): see the functions below; each reproduces an attack.
//!
//! The run dir of a user without `XDG_RUNTIME_DIR` is `/tmp/cove-run-UID`, a name any local
//! user can take first; and compiled seccomp programs were cached in it and loaded as found.

#[allow(unused_imports)]
use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// `/tmp/cove-run-UID` of one user, moved aside for the test (a real one may exist) and put
/// back afterwards; whatever the test left there is removed.
struct TmpRunDir {
    path: PathBuf,
    saved: Option<PathBuf>,
}

impl TmpRunDir {
    fn take(uid: u32) -> TmpRunDir {
        let path = PathBuf::from(format!("/tmp/cove-run-{uid}"));
        let saved = std::fs::symlink_metadata(&path).is_ok().then(|| {
            let s = PathBuf::from(format!("/tmp/cove-run-{uid}.saved-by-test-{}", std::process::id()));
            std::fs::rename(&path, &s).expect("move the user's run dir aside");
            s
        });
        TmpRunDir { path, saved }
    }

    fn clear(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.path).expect("remove the test's run dir"),
            Ok(_) => std::fs::remove_file(&self.path).expect("remove the test's symlink"),
            Err(_) => {}
        }
    }
}

impl Drop for TmpRunDir {
    fn drop(&mut self) {
        self.clear();
        if let Some(s) = &self.saved {
            let _ = std::fs::rename(s, &self.path);
        }
    }
}

/// A directory owned by `user`, mode 0700 (a place the victim owns: a symlink to it passed
/// the old owner check).
fn dir_of(user: &nix::unistd::User) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("cove-rundir-").tempdir_in(common::tmp_base()).expect("tempdir");
    nix::unistd::chown(d.path(), Some(user.uid), Some(user.gid)).expect("chown");
    d
}

#[test]
fn run_dir_in_tmp_must_be_a_private_directory_of_the_user() {
    // Another user is needed to plant things: root plays the attacker, covetest and covenosub
    // the victims (cove run through runuser with no XDG_RUNTIME_DIR and no COVE_ROOT, as under
    // cron, su or ssh without logind).
    if !is_root() {
        println!("note: run_dir_in_tmp_must_be_a_private_directory_of_the_user runs in the root pass (as covetest and covenosub)");
        return;
    }
    let mut checked = 0;
    for name in ["covetest", "covenosub"] {
        let Some(user) = nix::unistd::User::from_name(name).ok().flatten() else {
            skip(&format!("no user {name} (tests/run-all.sh makes it)"));
            continue;
        };
        checked += 1;
        let uid = user.uid.as_raw();
        let run = TmpRunDir::take(uid);
        let data = dir_of(&user);
        let cove = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", name, "--"])
                .arg(bin())
                .args(args)
                .env_remove("COVE_ROOT")
                .env_remove("XDG_RUNTIME_DIR")
                .env("XDG_DATA_HOME", data.path())
                .env("HOME", format!("/home/{name}"))
                .env("USER", name)
                .env("COVE_KEEPER_IDLE_SECS", "2")
                .stdin(Stdio::null())
                .output()
                .expect("run cove")
        };
        let refused = |why: &str, what: &str| {
            let o = cove(&["ps"]);
            let err = stderr(&o);
            assert_eq!(
                o.status.code(),
                Some(125),
                "{name}, {why}: cove ps must refuse:\nstdout: {}\nstderr: {err}",
                String::from_utf8_lossy(&o.stdout)
            );
            assert_eq!(err.lines().count(), 1, "{name}, {why}: one line: {err}");
            assert!(
                err.contains(&run.path.display().to_string()) && err.contains(what),
                "{name}, {why}: names the path and says {what:?}: {err}"
            );
            // Whatever it started (nothing, after the fix) goes away with it.
            let _ = cove(&["system", "migrate"]);
        };

        // (a) A symlink planted by another user, to a directory the victim owns.
        let target = dir_of(&user);
        std::os::unix::fs::symlink(target.path(), &run.path).expect("plant the symlink");
        refused("a planted symlink", "symbolic link");
        let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{name}: cove made {left:?} behind the planted symlink");
        run.clear();

        // (b) A directory of the victim's that others may enter and write (0777)…
        std::fs::create_dir(&run.path).unwrap();
        std::fs::set_permissions(&run.path, std::fs::Permissions::from_mode(0o777)).unwrap();
        nix::unistd::chown(&run.path, Some(user.uid), Some(user.gid)).unwrap();
        refused("mode 0777", "mode 0777");
        assert_eq!(std::fs::metadata(&run.path).unwrap().mode() & 0o7777, 0o777, "{name}: refused, so left as found");
        run.clear();
        // …and one that someone else owns.
        std::fs::create_dir(&run.path).unwrap();
        std::fs::set_permissions(&run.path, std::fs::Permissions::from_mode(0o700)).unwrap();
        refused("owned by root", "owned by uid 0");
        run.clear();

        // Nothing there: cove makes it, private, and works.
        let o = cove(&["ps"]);
        assert!(o.status.success(), "{name}: cove ps with a fresh run dir: {}", stderr(&o));
        let m = std::fs::symlink_metadata(&run.path).expect("run dir made");
        assert!(
            m.is_dir() && m.uid() == uid && m.mode() & 0o7777 == 0o700,
            "{name}: run dir {:o} uid {}",
            m.mode(),
            m.uid()
        );
        let _ = cove(&["system", "migrate"]);
    }
    assert!(checked > 0 || std::env::var("COVE_REQUIRE_ALL").as_deref() != Ok("1"));
}

/// Every `*.bpf` file under `dir`.
fn bpf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => bpf_files(&p, out),
            Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "bpf") => out.push(p),
            _ => {}
        }
    }
}

#[test]
fn tampered_seccomp_cache_is_not_loaded() {
    let Some(w) = World::new() else { return };
    // `unshare -U` needs no capability: only the seccomp profile stops it.
    let probe = "unshare -U true && echo UNFILTERED || echo BLOCKED";
    let out = w.sh_ok(&["--security-opt", "seccomp=unconfined"], probe);
    assert!(out.contains("UNFILTERED"), "without seccomp, unshare -U should work here: {out}");
    assert!(w.sh_ok(&[], probe).contains("BLOCKED"), "the default profile blocks unshare -U");
    let mut cached = vec![];
    bpf_files(w.path(), &mut cached);
    assert!(!cached.is_empty(), "no seccomp cache file under {}", w.path().display());
    // An allow-all program (BPF_RET|BPF_K SECCOMP_RET_ALLOW), then garbage, where the cache is.
    let allow_all = [0x06u8, 0, 0, 0, 0, 0, 0xff, 0x7f];
    for (what, bytes) in [("an allow-all program", allow_all.to_vec()), ("garbage", vec![0xa5u8; 64])] {
        for f in &cached {
            std::fs::write(f, &bytes).unwrap();
        }
        let o = w.run_sh(&[], probe);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("BLOCKED"),
            "with {what} in the seccomp cache the container must still get its profile: {out} {}",
            stderr(&o)
        );
        let exec_out = {
            let id = w.ok(&["run", "-d", "bb", "sleep", "30"]);
            for f in &cached {
                std::fs::write(f, &bytes).unwrap();
            }
            let o = w.cove(&["exec", id.trim(), "sh", "-c", probe]);
            let _ = w.cove(&["rm", "-f", id.trim()]);
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert!(exec_out.contains("BLOCKED"), "exec with {what} in the seccomp cache: {exec_out}");
    }
}
