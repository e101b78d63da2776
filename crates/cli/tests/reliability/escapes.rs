//! Hostile input (issue 18): the escape corpus for layers and run options. Each attack is
//! written here as the image or the command line an attacker would hand cove; each must end
//! in one clear error line or be contained (nothing outside the layer directory or the
//! container's root is written, read or mounted). Hostile layers are tarballs built byte by
//! byte here (names the tar crate refuses to write, sizes no data backs), loaded with `cove
//! load -i` on top of the test rootfs. Runs as whoever runs the suite: root, covetest (subuid
//! range), covenosub (none). Each campaign ends with `report("escapes <class>", …)`.

#[allow(unused_imports)]
use super::*;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// A layer tarball written header by header: any name, any link target, any declared size.
struct RawLayer(Vec<u8>);

impl RawLayer {
    fn new() -> RawLayer {
        RawLayer(Vec::new())
    }

    fn block(&mut self, h: &tar::Header, data: &[u8]) {
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    /// A GNU long name ('L') or long link ('K') record for `value`.
    fn long(&mut self, ty: u8, value: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(ty));
        h.set_mode(0o644);
        h.set_size(value.len() as u64 + 1);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_cksum();
        let mut v = value.to_vec();
        v.push(0);
        self.block(&h, &v);
    }

    /// One entry. `declared`: the size the header claims (default: the data's).
    #[allow(clippy::too_many_arguments)]
    fn entry(
        mut self,
        ty: tar::EntryType,
        name: &[u8],
        link: &[u8],
        mode: u32,
        data: &[u8],
        declared: Option<u64>,
        dev: (u32, u32),
    ) -> RawLayer {
        if name.len() > 99 {
            self.long(b'L', name);
        }
        if link.len() > 99 {
            self.long(b'K', link);
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(declared.unwrap_or(data.len() as u64));
        if matches!(ty, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        let n = name.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(99);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_cksum();
        self.block(&h, data);
        self
    }

    fn dir(self, name: &str) -> RawLayer {
        self.entry(tar::EntryType::Directory, name.as_bytes(), b"", 0o755, b"", None, (0, 0))
    }

    fn file(self, name: &str, data: &str) -> RawLayer {
        self.entry(tar::EntryType::Regular, name.as_bytes(), b"", 0o644, data.as_bytes(), None, (0, 0))
    }

    fn symlink(self, name: &str, target: &str) -> RawLayer {
        self.entry(tar::EntryType::Symlink, name.as_bytes(), target.as_bytes(), 0o777, b"", None, (0, 0))
    }

    fn hardlink(self, name: &str, target: &str) -> RawLayer {
        self.entry(tar::EntryType::Link, name.as_bytes(), target.as_bytes(), 0o644, b"", None, (0, 0))
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes a docker-archive of `tag`: the test rootfs, then `layer`, and loads it.
fn load(w: &World, tag: &str, config: serde_json::Value, layer: Vec<u8>) -> Output {
    let layers = vec![std::fs::read(rootfs().unwrap()).unwrap(), layer];
    let path = w.path().join(format!("{tag}.tar"));
    write_docker_archive(&path, tag, config, &layers);
    let o = w.cove(&["load", "-i", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    o
}

fn env() -> serde_json::Value {
    serde_json::json!({"Env": ["PATH=/bin"]})
}

/// What must never change on the host: a directory with a secret file in it (its content,
/// link count and the directory's listing), and the store's layer and staging directories.
struct HostSide {
    dir: PathBuf,
    secret: PathBuf,
    marker: String,
}

impl HostSide {
    fn new(w: &World) -> HostSide {
        let dir = w.path().join("hostside");
        std::fs::create_dir(&dir).unwrap();
        let marker = format!("HOSTSECRET-{}", std::process::id());
        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{marker}\n")).unwrap();
        HostSide { dir, secret, marker }
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Nothing was added, removed or linked: `None`, or what changed.
    fn changed(&self) -> Option<String> {
        let names: Vec<String> =
            std::fs::read_dir(&self.dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        if names != ["secret"] {
            return Some(format!("{} now holds {names:?}", self.dir.display()));
        }
        let m = std::fs::symlink_metadata(&self.secret).unwrap();
        if m.nlink() != 1 || !m.is_file() {
            return Some(format!("{} has {} links (file: {})", self.secret.display(), m.nlink(), m.is_file()));
        }
        let text = std::fs::read_to_string(&self.secret).unwrap();
        (text != format!("{}\n", self.marker)).then(|| format!("{} was rewritten: {text:?}", self.secret.display()))
    }
}

/// The store's unpacked layers, staging area and the image list: a refused load leaves them
/// as they were.
fn store_state(w: &World) -> (Vec<String>, String) {
    let storage = w.path().join("data/storage");
    let mut names = vec![];
    for sub in ["layers", "tmp"] {
        for e in std::fs::read_dir(storage.join(sub)).into_iter().flatten().flatten() {
            names.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    names.sort();
    (names, w.ok(&["images", "-q", "--no-trunc"]))
}

/// One campaign's tally: attacks tried, contained, escaped (with what escaped).
#[derive(Default)]
struct Tally {
    injected: usize,
    contained: usize,
    escapes: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, escape: Option<String>) {
        self.injected += 1;
        match escape {
            None => self.contained += 1,
            Some(e) => self.escapes.push(format!("{what}: {e}")),
        }
    }

    fn finish(self, campaign: &str) {
        report(campaign, self.injected, self.contained, self.escapes.len(), &[]);
        assert!(self.escapes.is_empty(), "{campaign}: {} escaped:\n{}", self.escapes.len(), self.escapes.join("\n"));
    }
}

/// A refused load: exit 125, one line `cove: error: …` (containing `says` when given), no
/// panic, and the store as it was.
fn refused(o: &Output, says: &str, before: &(Vec<String>, String), w: &World) -> Option<String> {
    let e = stderr(o);
    if o.status.code() != Some(125) {
        return Some(format!("not refused (exit {:?}): {}{e}", o.status.code(), out(o)));
    }
    if e.lines().count() != 1 || !e.starts_with("cove: error: ") || e.contains("panicked") {
        return Some(format!("not one error line: {e}"));
    }
    // A name of 20,000 bytes is shown cut, not echoed whole.
    if e.len() > 400 {
        return Some(format!("an error line of {} bytes: {}…", e.len(), e.chars().take(300).collect::<String>()));
    }
    if !e.contains(says) {
        return Some(format!("the error does not say {says:?}: {e}"));
    }
    let after = store_state(w);
    (after != *before).then(|| format!("the store changed: {before:?} -> {after:?}"))
}

/// Every layer attack on paths: `..` and absolute names and link targets, links through
/// symlinks and to directories, whiteouts aimed outside, names longer than PATH_MAX, trees
/// 10,000 levels deep, a header declaring 1 TiB without data.
#[test]
fn layer_paths_stay_in_the_layer() {
    let Some(w) = World::new() else { return };
    let host = HostSide::new(&w);
    let h = host.path().to_string();
    let ups = "../".repeat(40);
    let before = store_state(&w);
    let mut t = Tally::default();
    // (what, layer, what the error says; "" when the layer is contained and loads)
    let deep: String = "d/".repeat(10_000);
    let mut incremental = RawLayer::new();
    for i in 1..=300 {
        incremental = incremental.dir(&"i/".repeat(i));
    }
    let long_component = "n".repeat(300);
    let mut beyond_path_max = String::new();
    for i in 0..20 {
        beyond_path_max.push_str(&format!("{}{i:02}/", "p".repeat(240)));
    }
    let cases: Vec<(&str, RawLayer, &str)> = vec![
        ("entry ../…/HOST/pwned", RawLayer::new().file(&format!("{ups}{h}/pwned"), "x"), "escapes"),
        ("entry a/../../pwned", RawLayer::new().file("a/../../pwned", "x"), "escapes"),
        ("entry ./../pwned", RawLayer::new().file("./../pwned", "x"), "escapes"),
        ("entry .. (a directory)", RawLayer::new().dir(".."), "escapes"),
        ("absolute entry /HOST/pwned", RawLayer::new().file(&format!("{h}/pwned"), "x"), ""),
        (
            "symlink l -> ../…/HOST, then l/pwned",
            RawLayer::new().symlink("l", &format!("{ups}{h}")).file("l/pwned", "x"),
            "symlink",
        ),
        ("symlink l -> HOST, then l/pwned", RawLayer::new().symlink("l", &h).file("l/pwned", "x"), "symlink"),
        ("symlink l -> HOST, then dir l/sub", RawLayer::new().symlink("l", &h).dir("l/sub"), "symlink"),
        ("symlink l -> HOST, then symlink l/s", RawLayer::new().symlink("l", &h).symlink("l/s", "/"), "symlink"),
        ("hard link to ../…/HOST/secret", RawLayer::new().hardlink("h", &format!("{ups}{h}/secret")), "escapes"),
        ("hard link to HOST/secret", RawLayer::new().hardlink("h", &format!("{h}/secret")), "does not exist"),
        ("hard link to a directory", RawLayer::new().dir("d").hardlink("h", "d"), "directory"),
        ("hard link to the layer root", RawLayer::new().hardlink("h", "./"), "directory"),
        ("hard link through l -> HOST", RawLayer::new().symlink("l", &h).hardlink("h", "l/secret"), "symlink"),
        // The link is to the symlink itself: a symlink resolved later inside the container.
        (
            "hard link to a symlink to HOST/secret, then the symlink replaced",
            RawLayer::new().symlink("s", &format!("{h}/secret")).hardlink("h", "s").file("s", "replaced"),
            "",
        ),
        (
            "file replaced by a symlink to HOST/secret, then hard-linked and written",
            RawLayer::new()
                .file("f", "inside")
                .symlink("f", &format!("{h}/secret"))
                .hardlink("h", "f")
                .file("h", "overwritten"),
            "",
        ),
        ("whiteout .wh...", RawLayer::new().file(".wh...", ""), "whiteout"),
        ("whiteout .wh..", RawLayer::new().file(".wh..", ""), "whiteout"),
        ("whiteout ../.wh.secret", RawLayer::new().file(&format!("{ups}{h}/.wh.secret"), ""), "escapes"),
        ("whiteout l/.wh.secret with l -> HOST", RawLayer::new().symlink("l", &h).file("l/.wh.secret", ""), "symlink"),
        (
            "opaque l/.wh..wh..opq with l -> HOST",
            RawLayer::new().symlink("l", &h).file("l/.wh..wh..opq", ""),
            "symlink",
        ),
        (
            "opaque marker as a directory l/.wh..wh..opq",
            RawLayer::new().symlink("l", &h).dir("l/.wh..wh..opq"),
            "symlink",
        ),
        ("opaque marker at the layer root", RawLayer::new().file(".wh..wh..opq", "").file("etc/opaque-root", "x"), ""),
        ("opaque marker as a symlink", RawLayer::new().symlink("o/.wh..wh..opq", &h), ""),
        ("whiteout as a symlink to HOST/secret", RawLayer::new().symlink(".wh.secret", &format!("{h}/secret")), ""),
        ("a name of 300 bytes", RawLayer::new().file(&long_component, "x"), "File name too long"),
        ("a path of 4,900 bytes (beyond PATH_MAX)", RawLayer::new().file(&format!("{beyond_path_max}f"), "x"), ""),
        ("one entry 10,000 directories deep", RawLayer::new().file(&format!("{deep}f"), "x"), "components"),
        ("300 nested directory entries", incremental, "components"),
        (
            "a file declaring 1 TiB with no data",
            RawLayer::new().entry(tar::EntryType::Regular, b"huge", b"", 0o644, b"", Some(1 << 40), (0, 0)),
            "",
        ),
        (
            "a file declaring 1 TiB then more entries",
            RawLayer::new()
                .entry(tar::EntryType::Regular, b"huge", b"", 0o644, b"abc", Some(1 << 40), (0, 0))
                .file("after", "x"),
            "",
        ),
    ];
    for (i, (what, layer, says)) in cases.into_iter().enumerate() {
        let tag = format!("hostile{i}");
        let started = std::time::Instant::now();
        let o = load(&w, &tag, env(), layer.finish());
        let took = started.elapsed();
        let mut escape = host.changed();
        if escape.is_none() && took > std::time::Duration::from_secs(20) {
            escape = Some(format!("took {took:?}"));
        }
        if escape.is_none() {
            escape = if what.contains("1 TiB") {
                // Truncated data: refused like any cut archive.
                refused(&o, "", &before, &w)
            } else if says.is_empty() {
                if o.status.success() {
                    contained_in_container(&w, &tag, &host)
                } else {
                    Some(format!("a harmless layer was refused: {}", stderr(&o)))
                }
            } else {
                refused(&o, says, &before, &w)
            };
        }
        if o.status.success() {
            let _ = w.cove(&["rmi", &tag]);
        }
        t.check(what, escape);
    }
    // The archive around the layers lies too: its layer member declares 1 TiB and ends.
    let mut outer = RawLayer::new();
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "config": env(),
        "rootfs": {"type": "layers", "diff_ids": ["sha256:".to_string() + &"0".repeat(64)]}}))
    .unwrap();
    let manifest = serde_json::to_vec(
        &serde_json::json!([{"Config": "config.json", "RepoTags": ["outer:1"], "Layers": ["layer/layer.tar"]}]),
    )
    .unwrap();
    outer = outer
        .entry(tar::EntryType::Regular, b"config.json", b"", 0o644, &config, None, (0, 0))
        .entry(tar::EntryType::Regular, b"manifest.json", b"", 0o644, &manifest, None, (0, 0))
        .entry(tar::EntryType::Regular, b"layer/layer.tar", b"", 0o644, &[0u8; 1024], Some(1 << 40), (0, 0));
    let path = w.path().join("outer.tar");
    std::fs::write(&path, outer.0).unwrap();
    let started = std::time::Instant::now();
    let o = w.cove(&["load", "-i", path.to_str().unwrap()]);
    let took = started.elapsed();
    let escape = refused(&o, "", &before, &w)
        .or_else(|| (took > std::time::Duration::from_secs(20)).then(|| format!("took {took:?}")));
    t.check("an archive member declaring 1 TiB", escape);
    t.finish("escapes layers");
}

/// Runs the loaded image `tag`: the host's secret is not readable through any of the names the
/// layers made, and the container starts.
fn contained_in_container(w: &World, tag: &str, host: &HostSide) -> Option<String> {
    let script =
        format!("cat /h /f /s /.wh.secret /o/.wh..wh..opq {0}/secret {0}/pwned 2>/dev/null; echo END", host.path());
    let o = w.cove(&["run", "--rm", tag, "sh", "-c", &script]);
    if out(&o).contains(&host.marker) {
        return Some(format!("the host's secret was read in the container: {}", out(&o)));
    }
    // An opaque root hides the rootfs below (no shell): the run fails, cleanly.
    let e = stderr(&o);
    let one_line = e.lines().count() == 1 && e.starts_with("cove: error:");
    if !o.status.success() && !one_line {
        return Some(format!("the run failed unclearly ({:?}): {e}", o.status.code()));
    }
    host.changed()
}

/// Runs `args` and says what is wrong with how it ended: `None` when it succeeded, or failed
/// with one `cove: error:` line and no panic.
fn unclear_failure(o: &Output) -> Option<String> {
    let e = stderr(o);
    if e.contains("panicked") || o.status.code().is_none() {
        return Some(format!("crashed ({:?}): {e}", o.status));
    }
    let errors = e.lines().filter(|l| l.starts_with("cove: error:")).count();
    (!o.status.success() && errors != 1).then(|| format!("failed ({:?}) without one error line: {e}", o.status.code()))
}

/// runc CVE-2021-30465: a mount target inside a volume that another container keeps turning
/// into a symlink to a host directory while this one is being set up; and the same target
/// left as such a symlink by a container that ran before. Each start either mounts inside the
/// container's root or fails with one line; nothing is created or mounted in the host's
/// directory.
#[test]
fn mount_targets_swapped_for_symlinks_stay_in_the_root() {
    let Some(w) = World::new() else { return };
    let host = HostSide::new(&w);
    let src = w.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), "FROM-SRC\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut t = Tally::default();
    // Left behind: /data/t -> HOST in the shared volume, then a bind and a tmpfs below it.
    w.sh_ok(&["-v", "shared:/data"], &format!("ln -s {} /data/t", host.path()));
    let bind = format!("{}:/data/t/m", src.display());
    for (what, extra) in [
        ("bind below a symlink to HOST", vec!["-v", "shared:/data", "-v", bind.as_str()]),
        ("tmpfs below a symlink to HOST", vec!["-v", "shared:/data", "--tmpfs", "/data/t/m"]),
        ("volume below a symlink to HOST", vec!["-v", "shared:/data", "-v", "other:/data/t/m"]),
    ] {
        let o = w.run_sh(&extra, "cat /data/t/m/file 2>/dev/null; echo ran");
        t.check(what, unclear_failure(&o).or_else(|| host.changed()));
    }
    // Racing: a container swaps /data/t between a directory and a symlink to HOST as fast as
    // it can while containers start with mounts below it.
    w.sh_ok(&["-v", "shared:/data"], "rm -rf /data/t");
    let race = format!(
        "while :; do mkdir /data/t 2>/dev/null; rm -rf /data/t; ln -s {} /data/t; rm -f /data/t; done",
        host.path()
    );
    w.ok(&["run", "-d", "--name", "racer", "-v", "shared:/data", "bb", "sh", "-c", &race]);
    let rounds = if long_form() { 60 } else { 12 };
    let mut started = 0;
    for i in 0..rounds {
        let extra: Vec<&str> = match i % 3 {
            0 => vec!["-v", "shared:/data", "-v", bind.as_str()],
            1 => vec!["-v", "shared:/data", "--tmpfs", "/data/t/m"],
            _ => vec!["-v", "shared:/data", "-v", "other:/data/t/m"],
        };
        let o = w.run_sh(&extra, "echo ran");
        started += usize::from(o.status.success());
        t.check(&format!("race round {i}"), unclear_failure(&o).or_else(|| host.changed()));
    }
    w.ok(&["rm", "-f", "racer"]);
    println!("race: {started} of {rounds} containers started (the others failed cleanly)");
    t.finish("escapes mount targets");
}

/// What a `readlink` of each of a process's descriptors may show: its stdio (pipes, sockets,
/// a terminal, /dev/null), never a directory or file of the host.
fn foreign_fds(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| {
            let target = l.split_once(' ').map(|(_, t)| t).unwrap_or("");
            !(target.starts_with("pipe:")
                || target.starts_with("socket:")
                || target.starts_with("anon_inode:")
                || target.starts_with("/dev/pts/")
                || target == "/dev/null"
                || target.starts_with("/proc/")
                || target.is_empty())
        })
        .map(String::from)
        .collect()
}

/// CVE-2024-21626: a descriptor or working directory of cove's leaking into the container
/// (runc left a descriptor of /sys/fs/cgroup open; `-w /proc/self/fd/7` then put PID 1's cwd
/// on the host). cove runs here with an extra inheritable descriptor of a host directory and
/// its cwd in that directory; PID 1 (foreground, detached) and an exec'd process list their
/// descriptors and cwd, and `-w /proc/self/fd/N` is tried for run and exec.
#[test]
fn no_host_descriptor_or_directory_reaches_the_container() {
    let Some(w) = World::new() else { return };
    let host = HostSide::new(&w);
    let dir = std::fs::File::open(&host.dir).unwrap();
    nix::fcntl::fcntl(&dir, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let cove = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.current_dir(&host.dir);
        c.output().unwrap()
    };
    let list = "for f in /proc/self/fd/* /proc/1/fd/*; do echo \"$f $(readlink $f)\"; done; echo \"cwd $(readlink /proc/self/cwd) $(readlink /proc/1/cwd)\"";
    let mut t = Tally::default();
    let mut check = |what: &str, o: &Output| {
        let text = out(o);
        let mut escape = unclear_failure(o);
        if escape.is_none() && o.status.success() {
            let foreign = foreign_fds(&text.lines().filter(|l| !l.starts_with("cwd ")).collect::<Vec<_>>().join("\n"));
            let cwd = text.lines().find(|l| l.starts_with("cwd ")).unwrap_or("cwd ?");
            escape = if !foreign.is_empty() {
                Some(format!("descriptors of the host: {foreign:?}"))
            } else if cwd.contains(host.path()) || cwd.contains("unreachable") || cwd.contains('?') {
                Some(format!("a working directory outside the root: {cwd}"))
            } else {
                None
            };
        }
        t.check(what, escape);
    };
    check("run", &cove(&["run", "--rm", "bb", "sh", "-c", list]));
    check("run --init", &cove(&["run", "--rm", "--init", "bb", "sh", "-c", list]));
    check("run -t", &cove(&["run", "--rm", "-t", "bb", "sh", "-c", list]));
    let id = String::from_utf8_lossy(&cove(&["run", "-d", "bb", "sleep", "60"]).stdout).trim().to_string();
    check("exec", &cove(&["exec", &id, "sh", "-c", list]));
    check("exec -t", &cove(&["exec", "-t", &id, "sh", "-c", list]));
    let id2 = String::from_utf8_lossy(&cove(&["run", "-d", "--init", "bb", "sleep", "60"]).stdout).trim().to_string();
    check("exec into --init", &cove(&["exec", &id2, "sh", "-c", list]));
    for n in 3..=10 {
        let wd = format!("/proc/self/fd/{n}");
        check(&format!("run -w {wd}"), &cove(&["run", "--rm", "-w", &wd, "bb", "sh", "-c", list]));
        check(&format!("exec -w {wd}"), &cove(&["exec", "-w", &wd, &id, "sh", "-c", list]));
    }
    check("run -w /proc/1/cwd", &cove(&["run", "--rm", "-w", "/proc/1/cwd", "bb", "sh", "-c", list]));
    check("exec -w /proc/1/cwd/..", &cove(&["exec", "-w", "/proc/1/cwd/..", &id, "sh", "-c", list]));
    w.ok(&["rm", "-f", &id, &id2]);
    t.finish("escapes descriptors");
}

/// `-v /proc/self/root:/x`, `-v /proc/1/root:/x`, `-v /proc/self/cwd:/x`: Docker resolves the
/// source as the engine sees it (the host's root for root: the same as `-v /:/x`, which root
/// may ask for). Rootless, the container must see no more than the user could: a file only
/// root may read stays unreadable, and `/proc/1/root` of a process the user cannot trace is
/// refused with one line.
#[test]
fn proc_paths_as_bind_sources_give_no_more_than_the_user_has() {
    let Some(w) = rootless_world() else { return };
    let mut t = Tally::default();
    // In the root pass a file only root can read, next to the world; rootless passes cannot
    // make one and check /etc/shadow (0640 root:shadow or stricter) instead.
    let rootonly = if is_root() {
        let p = w.path().join("rootonly");
        std::fs::write(&p, "ROOTONLY\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    } else {
        "/etc/shadow".to_string()
    };
    for src in ["/proc/self/root", "/proc/1/root", "/proc/self/cwd", "/proc/thread-self/root"] {
        let v = format!("{src}:/x");
        let script = format!("cat /x{rootonly} 2>/dev/null && echo READ; echo ran");
        let o = w.cove(&["run", "--rm", "-v", &v, "bb", "sh", "-c", &script]);
        let mut escape = unclear_failure(&o);
        if escape.is_none() && out(&o).contains("READ") {
            escape = Some(format!("a root-only file was read through {src}: {}", out(&o)));
        }
        if escape.is_none() && !o.status.success() && stderr(&o).contains("File exists") {
            escape = Some(format!("a misleading error: {}", stderr(&o)));
        }
        t.check(&format!("-v {src}:/x"), escape);
    }
    t.finish("escapes proc binds");
}

/// A container writing to the kernel's interfaces: /sys is read-only, /proc/sysrq-trigger and
/// /proc/sys read-only, /proc/kcore masked. Rootless the same holds with --privileged (a user
/// namespace cannot reach them); as root --privileged is the host's own power, as in Docker,
/// and is not tried.
#[test]
fn kernel_interfaces_refuse_a_containers_writes() {
    let Some(w) = World::new() else { return };
    let probes = [
        ("/proc/sysrq-trigger", "echo h > /proc/sysrq-trigger"),
        ("/proc/sys/kernel/core_pattern", "echo '|/tmp/x' > /proc/sys/kernel/core_pattern"),
        ("/proc/sys/vm/drop_caches", "echo 1 > /proc/sys/vm/drop_caches"),
        ("/sys/kernel/uevent_helper", "echo /tmp/x > /sys/kernel/uevent_helper"),
        ("/sys/class/net/lo/mtu", "echo 1280 > /sys/class/net/lo/mtu"),
        ("/sys/fs/cgroup", "mkdir /sys/fs/cgroup/cove-escape"),
        ("/proc/kcore", "test \"$(head -c 64 /proc/kcore | wc -c)\" -gt 0"),
        ("/dev/core", "test \"$(head -c 64 /dev/core | wc -c)\" -gt 0"),
    ];
    let mut t = Tally::default();
    // /proc/kmsg needs CAP_SYSLOG, which only an added capability gives (as in Docker).
    let o = w.run_sh(&[], "if timeout 1 head -c 1 /proc/kmsg >/dev/null 2>&1; then echo WROTE; else echo REFUSED; fi");
    t.check("/proc/kmsg", unclear_failure(&o).or_else(|| (!out(&o).contains("REFUSED")).then(|| out(&o))));
    let mut modes: Vec<Vec<&str>> = vec![vec![], vec!["--cap-add", "SYS_ADMIN"], vec!["--cap-add", "ALL"]];
    if !is_root() {
        modes.push(vec!["--privileged"]);
    }
    for mode in &modes {
        for (what, probe) in probes {
            // With --privileged (rootless) the container's own network namespace's sysfs is
            // its own to change, as in Podman.
            if mode.contains(&"--privileged") && what.starts_with("/sys/class/net/lo") {
                continue;
            }
            let script = format!("if {probe} 2>/dev/null; then echo WROTE; else echo REFUSED; fi");
            let o = w.run_sh(mode, &script);
            let escape = unclear_failure(&o).or_else(|| {
                (!o.status.success() || !out(&o).contains("REFUSED"))
                    .then(|| format!("{what}: {}{}", out(&o), stderr(&o)))
            });
            t.check(&format!("{what} {mode:?}"), escape);
        }
    }
    t.finish("escapes kernel interfaces");
}

/// The worlds of a test that needs no root of its own: whoever runs the suite and, in the root
/// pass, covetest too (so the root pass alone covers root and rootless).
fn worlds() -> Vec<(String, World)> {
    let mut v = vec![];
    let me = if is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_else(|_| "user".into()) };
    if let Some(w) = World::new() {
        v.push((me, w));
    }
    if is_root() && nix::unistd::User::from_name("covetest").ok().flatten().is_some() {
        if let Some(w) = World::new_as("covetest") {
            v.push(("covetest".into(), w));
        }
    }
    v
}

/// `bin/busybox` of the test rootfs (a layer of ours copies it, setuid).
fn busybox_bytes() -> Vec<u8> {
    let mut a = tar::Archive::new(std::fs::File::open(rootfs().unwrap()).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("bin/busybox") && e.header().entry_type().is_file() {
            let mut v = vec![];
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("no bin/busybox in the test rootfs");
}

/// Device nodes and setuid/setgid files in a layer. Rootless, nodes cannot be made (they are
/// skipped, and a user namespace's mounts are nodev anyway). As root they are kept, as in
/// Docker, and the container's device rules (Docker's defaults: only null, zero, full, random,
/// urandom, tty, console, ptmx, pts and tun) keep it from opening them — or a node it makes
/// itself with CAP_MKNOD, from its PID 1 or from `exec`. Before the rules, a root container
/// opened a layer's `b 7:0` (the host's /dev/loop0). A setuid copy of busybox gives a user of
/// the container nothing (no_new_privs), and no other host user can reach the layer's file.
#[test]
fn device_nodes_and_setuid_files_in_layers_give_no_host_access() {
    let mut t = Tally::default();
    let bb = busybox_bytes();
    for (who, w) in worlds() {
        let layer = RawLayer::new()
            .entry(tar::EntryType::Block, b"loop0", b"", 0o666, b"", None, (7, 0))
            .entry(tar::EntryType::Char, b"mem", b"", 0o666, b"", None, (1, 1))
            .entry(tar::EntryType::Char, b"kmsg", b"", 0o666, b"", None, (1, 11))
            .entry(tar::EntryType::Char, b"null2", b"", 0o666, b"", None, (1, 3))
            .entry(tar::EntryType::Regular, b"suid/busybox", b"", 0o4755, &bb, None, (0, 0))
            .entry(tar::EntryType::Regular, b"sgid/busybox", b"", 0o2755, &bb, None, (0, 0));
        let o = load(&w, "devices", env(), layer.finish());
        t.check(&format!("{who}: load a layer with device nodes"), unclear_failure(&o));
        if !o.status.success() {
            continue;
        }
        // `open NODE`: OPENED when reading (or, for block devices, opening) worked.
        let open = |p: &str| format!("if [ -e {p} ] && (exec 3<{p}) 2>/dev/null; then echo OPENED {p}; fi");
        let script = [
            open("/loop0"),
            open("/mem"),
            open("/kmsg"),
            "mknod /tmp/l b 7 0 2>/dev/null".into(),
            open("/tmp/l"),
            "mknod /dev/l2 b 7 0 2>/dev/null".into(),
            open("/dev/l2"),
            "echo null: $( (echo x > /null2 && echo ok) 2>&1 || true)".into(),
            "echo done".into(),
        ]
        .join("; ");
        for extra in [&[][..], &["--cap-add", "ALL"][..], &["--security-opt", "seccomp=unconfined"][..]] {
            let mut args = vec!["run", "--rm"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["devices", "sh", "-c", &script]);
            let o = w.cove(&args);
            let escape = unclear_failure(&o).or_else(|| {
                let s = out(&o);
                if s.contains("OPENED") {
                    Some(format!("a device node was opened: {s}"))
                } else if !s.contains("done") {
                    Some(format!("did not run: {s}{}", stderr(&o)))
                } else {
                    None
                }
            });
            t.check(&format!("{who}: run {extra:?}"), escape);
        }
        // From exec: a node made by PID 1, then one by the exec'd process.
        let id = w.ok(&["run", "-d", "--name", "dev", "devices", "sh", "-c", "mknod /tmp/p b 7 0; sleep 60"]);
        let id = id.trim();
        let o = w.cove(&[
            "exec",
            "dev",
            "sh",
            "-c",
            &format!("{}; mknod /tmp/e b 7 0 2>/dev/null; {}; echo done", open("/tmp/p"), open("/tmp/e")),
        ]);
        t.check(
            &format!("{who}: exec"),
            unclear_failure(&o)
                .or_else(|| out(&o).contains("OPENED").then(|| format!("exec opened a node: {}", out(&o)))),
        );
        let _ = w.cove(&["rm", "-f", "dev"]);
        // The cgroup that holds its device rules goes with it (`rm -f` of a running container:
        // the monitor found its directory gone and left the cgroup).
        let cgroup = PathBuf::from(format!("/sys/fs/cgroup/devices/cove/{id}"));
        if who == "root" && Path::new("/sys/fs/cgroup/devices/cove").is_dir() {
            let gone = wait_until(|| !cgroup.exists(), 10);
            t.check(
                &format!("{who}: rm -f leaves no cgroup"),
                (!gone).then(|| format!("{} is left", cgroup.display())),
            );
        }
        // A monitor killed with SIGKILL does not clean up: the next command does.
        if who == "root" && Path::new("/sys/fs/cgroup/devices/cove").is_dir() {
            let id = w.ok(&["run", "-d", "--name", "km", "devices", "sleep", "60"]);
            let id = id.trim();
            let pidfile = w.path().join(format!("run/containers/{id}/monitor.pid"));
            let monitor: i32 =
                std::fs::read_to_string(&pidfile).unwrap().split_whitespace().next().unwrap().parse().unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
            w.ok(&["rm", "-f", "km"]);
            let cgroup = PathBuf::from(format!("/sys/fs/cgroup/devices/cove/{id}"));
            let gone = wait_until(|| !cgroup.exists(), 10);
            t.check(&format!("{who}: killed monitor, rm -f"), (!gone).then(|| format!("{} is left", cgroup.display())));
        }
        // Setuid and setgid files: nothing for a container user (no_new_privs)…
        let o = w.cove(&[
            "run",
            "--rm",
            "-u",
            "1000:1000",
            "devices",
            "sh",
            "-c",
            "/suid/busybox id -u; /sgid/busybox id -g",
        ]);
        let ids = out(&o);
        let unmapped = stderr(&o).contains("not mapped");
        t.check(
            &format!("{who}: setuid file run by a container user"),
            unclear_failure(&o).or_else(|| (!unmapped && ids != "1000\n1000\n").then(|| format!("ids {ids:?}"))),
        );
        // …and nothing for another host user: the layer's copy is out of reach.
        if is_root() && nix::unistd::User::from_name("covenosub").ok().flatten().is_some() {
            let mut layers = vec![];
            walk_files(&w.path().join("data/storage/layers"), &mut layers);
            for f in layers.iter().filter(|p| p.ends_with("suid/busybox") || p.ends_with("sgid/busybox")) {
                let o =
                    Command::new("runuser").args(["-u", "covenosub", "--"]).arg(f).args(["id", "-u"]).output().unwrap();
                t.check(
                    &format!("{who}: {} run by covenosub on the host", f.display()),
                    o.status.success().then(|| format!("ran: {}", String::from_utf8_lossy(&o.stdout))),
                );
            }
        }
        let _ = w.cove(&["rmi", "devices"]);
    }
    t.finish("escapes device nodes");
}

/// Every file below `dir`, not following symlinks.
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => walk_files(&e.path(), out),
            Ok(_) => out.push(e.path()),
            Err(_) => {}
        }
    }
}
