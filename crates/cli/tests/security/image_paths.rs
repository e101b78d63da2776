//! Security regression tests (issue 21): paths from images and from a container's own writes
//! must be resolved inside its root. Hostile images are docker-archives built here (the test
//! rootfs as the first layer, then small layers of symlinks) and loaded with `cove load -i`.
//! Each test runs as whoever runs the suite: root, covetest (subuid range), covenosub (none).

#[allow(unused_imports)]
use super::*;

/// A layer tarball being built.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(mut self, name: &str) -> Layer {
        let mut h = Layer::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, name, &b""[..]).unwrap();
        self
    }

    fn file(mut self, name: &str, data: &str) -> Layer {
        let mut h = Layer::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.0.append_data(&mut h, name, data.as_bytes()).unwrap();
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Layer {
        let mut h = Layer::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Loads a docker-archive named `tag`: the test rootfs, then `layers`, with `config` as the
/// image's `config` object.
fn load_image(w: &World, tag: &str, config: serde_json::Value, layers: Vec<Vec<u8>>) {
    let mut all = vec![std::fs::read(rootfs().unwrap()).unwrap()];
    all.extend(layers);
    let path = w.path().join(format!("{}.tar", tag.replace([':', '/'], "_")));
    write_docker_archive(&path, tag, config, &all);
    w.ok(&["load", "-i", path.to_str().unwrap()]);
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exited normally (no signal, no panic, no stack overflow) with a one-line error if any.
fn assert_clean_exit(o: &Output, what: &str) {
    let e = stderr(o);
    assert!(o.status.code().is_some(), "{what}: killed by a signal ({:?}): {e}", o.status);
    assert!(!e.contains("panicked") && !e.contains("overflow"), "{what}: {e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("cove: error")).collect();
    assert!(errors.len() <= 1 && (o.status.success() || errors.len() == 1), "{what}: {e}");
}

/// A file of the host's that the user running cove can read, which no image may reach.
fn host_secret(w: &World) -> (String, String) {
    let marker = format!("TOPSECRET-{}", std::process::id());
    let p = w.path().join("secret");
    std::fs::write(&p, format!("{marker}\nsecretuser:x:4343:4343::/s:/bin/sh\n")).unwrap();
    (p.to_str().unwrap().to_string(), marker)
}

#[test]
fn image_passwd_symlinks_cannot_read_host_files() {
    let Some(w) = World::new() else { return };
    let (secret, marker) = host_secret(&w);
    // x -> / and etc/passwd -> /x/<the host file>: cove read the host's file when it
    // synthesized an entry for uid 4242 (the image's "User"), and put it in the container.
    let l = Layer::new().symlink("x", "/").dir("etc").symlink("etc/passwd", &format!("/x{secret}"));
    load_image(
        &w,
        "leak",
        serde_json::json!({"User": "4242", "Cmd": ["cat", "/etc/passwd"], "Env": ["PATH=/bin"]}),
        vec![l.finish()],
    );
    let o = w.cove(&["run", "--rm", "leak"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out(&o).contains(&marker), "the host file leaked into the container: {}", out(&o));
    assert!(out(&o).contains("user4242:x:4242:"), "{}", out(&o));
    // -> /x/proc/self/environ: the CLI's own environment went into the container's passwd.
    let l = Layer::new().symlink("x", "/").dir("etc").symlink("etc/passwd", "/x/proc/self/environ");
    load_image(&w, "environ", serde_json::json!({"User": "4242", "Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "--rm", "environ", "cat", "/etc/passwd"]);
    assert_clean_exit(&o, "etc/passwd -> /x/proc/self/environ");
    assert!(!out(&o).contains("COVE_ROOT"), "the CLI's environment leaked: {}", out(&o));
    let o = w.cove(&["run", "--rm", "-u", "4242", "leak", "cat", "/etc/passwd"]);
    assert!(o.status.success() && !out(&o).contains(&marker), "{}{}", out(&o), stderr(&o));
    // A user named only in the host file is not found.
    let o = w.cove(&["run", "--rm", "-u", "secretuser", "leak", "id", "-u"]);
    assert_eq!(o.status.code(), Some(125), "{}{}", out(&o), stderr(&o));
    assert!(stderr(&o).contains("unable to find user secretuser"), "{}", stderr(&o));

    // A symlink in an upper layer to a real passwd of a lower layer (through x -> /) works:
    // its users resolve, and a synthesized entry is appended to it.
    let l2 = Layer::new()
        .dir("usr")
        .dir("usr/lib")
        .file("usr/lib/passwd", "root:x:0:0:root:/root:/bin/sh\ntester:x:4343:4343::/home/tester:/bin/sh\n");
    let l3 = Layer::new().symlink("x", "/").dir("etc").symlink("etc/passwd", "/x/usr/lib/passwd");
    load_image(&w, "lower", serde_json::json!({"Env": ["PATH=/bin"]}), vec![l2.finish(), l3.finish()]);
    assert_eq!(w.ok(&["run", "--rm", "-u", "tester", "lower", "id", "-u"]), "4343\n");
    let pw = w.ok(&["run", "--rm", "-u", "4242", "lower", "cat", "/etc/passwd"]);
    assert!(pw.contains("tester:x:4343:") && pw.contains("user4242:x:4242:"), "{pw}");

    // etc/passwd -> /etc/passwd: cove recursed until its stack overflowed.
    let l = Layer::new().dir("etc").symlink("etc/passwd", "/etc/passwd");
    load_image(&w, "loop", serde_json::json!({"User": "4242", "Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "--rm", "loop", "id", "-u"]);
    assert_clean_exit(&o, "run with a passwd loop");
    let o = w.cove(&["run", "--rm", "-u", "0", "loop", "id", "-u"]);
    assert_clean_exit(&o, "run -u 0 with a passwd loop");
    assert_eq!(out(&o), "0\n", "{}", stderr(&o));
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "nothing left behind");
}

/// exec cannot give a process an id outside the caller's map (no subuid range): a limit of
/// exec, not of what is tested here.
fn unmapped(o: &Output) -> bool {
    let e = stderr(o);
    if e.contains("is not mapped in the user namespace") {
        println!("note: {}", e.trim());
        return true;
    }
    false
}

#[test]
fn exec_user_lookup_stays_in_the_image() {
    let Some(w) = World::new() else { return };
    let (secret, marker) = host_secret(&w);
    let l = Layer::new().symlink("x", "/").dir("etc").symlink("etc/passwd", &format!("/x{secret}"));
    load_image(&w, "leak", serde_json::json!({"Env": ["PATH=/bin"]}), vec![l.finish()]);
    w.ok(&["run", "-d", "--name", "cc", "-u", "0", "leak", "sleep", "600"]);
    // The host file's user was found (read on the host through x -> /).
    let o = w.cove(&["exec", "-u", "secretuser", "cc", "id", "-u"]);
    assert_eq!(o.status.code(), Some(125), "{}{}", out(&o), stderr(&o));
    assert!(stderr(&o).contains("unable to find user secretuser"), "{}", stderr(&o));
    let o = w.cove(&["exec", "-u", "4242", "cc", "sh", "-c", "id -u; cat /etc/passwd 2>/dev/null; true"]);
    assert_clean_exit(&o, "exec -u 4242");
    assert!(!out(&o).contains(&marker), "{}", out(&o));
    if !unmapped(&o) {
        assert!(out(&o).starts_with("4242\n"), "{}{}", out(&o), stderr(&o));
    }
    // A passwd loop: exec -u recursed until the stack overflowed.
    let l = Layer::new().dir("etc").symlink("etc/passwd", "/etc/passwd").symlink("etc/group", "group");
    load_image(&w, "loop", serde_json::json!({"Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "-d", "--name", "ll", "-u", "0", "loop", "sleep", "600"]);
    assert_clean_exit(&o, "run -d -u 0 with a passwd loop");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = w.cove(&["exec", "-u", "4242", "ll", "id", "-u"]);
    assert_clean_exit(&o, "exec -u with a passwd loop");
    if !unmapped(&o) {
        assert_eq!(out(&o), "4242\n", "{}", stderr(&o));
    }
    let o = w.cove(&["exec", "-u", "nobody", "ll", "id", "-u"]);
    assert_clean_exit(&o, "exec -u NAME with a passwd loop");
    w.ok(&["rm", "-f", "cc", "ll"]);
}

/// Nothing under the container's /proc is covered by a mount (its /proc/1/environ is still
/// PID 1's environment, which has PATH and no hosts or passwd lines).
fn assert_refused_under_proc(o: &Output, what: &str) {
    let e = stderr(o);
    assert!(
        !out(o).contains("localhost") && !out(o).contains("user4242") && !out(o).contains("SECRETFILE"),
        "{what}: cove's mount was placed under /proc: {}",
        out(o)
    );
    assert!(o.status.code().is_some_and(|c| c != 0), "{what}: {}{e}", out(o));
    assert_eq!(e.lines().count(), 1, "{what}: {e}");
    assert!(e.contains("inside /proc"), "{what}: {e}");
}

#[test]
fn image_symlinks_cannot_place_mounts_under_proc() {
    let Some(w) = World::new() else { return };
    // /etc/hosts (bind-mounted for every container) -> /proc/1/environ.
    let l = Layer::new().dir("etc").symlink("etc/hosts", "/proc/1/environ");
    load_image(&w, "hosts", serde_json::json!({"Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "--rm", "hosts", "cat", "/proc/1/environ"]);
    assert_refused_under_proc(&o, "etc/hosts -> /proc/1/environ");
    // The synthesized passwd of "User": "4242" -> /proc/self/environ (through a relative link).
    let l = Layer::new().dir("etc").symlink("etc/passwd", "../proc/self/environ");
    load_image(&w, "passwd", serde_json::json!({"User": "4242", "Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "--rm", "passwd", "cat", "/proc/1/environ"]);
    assert_refused_under_proc(&o, "etc/passwd -> ../proc/self/environ");
    // A volume's target, through a directory symlink.
    let l = Layer::new().symlink("data", "/proc/1");
    load_image(&w, "vol", serde_json::json!({"Env": ["PATH=/bin"]}), vec![l.finish()]);
    let f = w.path().join("volfile");
    std::fs::write(&f, "SECRETFILE\n").unwrap();
    let v = format!("{}:/data/environ", f.display());
    let o = w.cove(&["run", "--rm", "-v", &v, "vol", "cat", "/proc/1/environ"]);
    assert_refused_under_proc(&o, "-v FILE:/data/environ with data -> /proc/1");
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn image_workdir_symlinks_do_not_create_host_dirs() {
    let Some(w) = World::new() else { return };
    let host = w.path().join("hostside");
    std::fs::create_dir(&host).unwrap();
    let l = Layer::new().symlink("l", ".").symlink("esc", "/");
    // Enough links (l -> .) that the old string-level resolution gave up and handed back a
    // path through the real symlinks, which mkdir then followed to the host's root.
    let deep = format!("/{}esc{}/made-by-cove", "l/".repeat(256), host.display());
    load_image(&w, "wd", serde_json::json!({"WorkingDir": deep, "Env": ["PATH=/bin"]}), vec![l.finish()]);
    let o = w.cove(&["run", "--rm", "wd", "pwd"]);
    assert_clean_exit(&o, "deep WorkingDir");
    assert!(!host.join("made-by-cove").exists(), "the WorkingDir was created on the host");
    // Through esc -> / the directory is made inside the container.
    let inside = format!("/esc{}/made-inside", host.display());
    let o = w.cove(&["run", "--rm", "-w", &inside, "wd", "pwd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out(&o).trim().ends_with("/made-inside"), "{}", out(&o));
    assert!(!host.join("made-inside").exists(), "the working directory was created on the host");
}

#[test]
fn restart_after_the_container_redirects_a_mount_target() {
    let Some(w) = World::new() else { return };
    let f = w.path().join("volfile");
    std::fs::write(&f, "SECRETFILE\n").unwrap();
    let v = format!("{}:/data/environ", f.display());
    // First start: /data is a directory cove made in the upper dir, with the file mounted in
    // it. The container replaces /data with a symlink to /proc/1; on the next start cove
    // mounted the file over the container's /proc/1/environ.
    let script = "if [ -L /data ]; then cat /proc/1/environ; else mv /data /data.old && ln -s /proc/1 /data && echo replaced; fi";
    w.ok(&["create", "--name", "rr", "-v", &v, "bb", "sh", "-c", script]);
    assert_eq!(w.ok(&["start", "-a", "rr"]), "replaced\n");
    let o = w.cove(&["start", "-a", "rr"]);
    assert_refused_under_proc(&o, "restart with /data -> /proc/1");
    w.ok(&["rm", "-f", "rr"]);
}
