//! Hostile input (issue 18): other users. One user's cove state (data dir, state database,
//! run dir, keeper files, the network helper's and the monitors' sockets) must be out of reach
//! of every other local user, a state dir owned by someone else is refused, and a published
//! port is bound as the user. Root plays the observer and the other users: these tests run in
//! the root pass, with cove run as covetest (subuid range) and covenosub (none) as the attacker.

#[allow(unused_imports)]
use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// For every path on stdin, tries what the user running it may do: open for reading and for
/// writing (regular files; no O_TRUNC, nothing is changed), list (directories), connect (unix
/// sockets). Prints `LEAK <how> <path>` for each that worked.
const PROBE_PY: &str = r#"
import os, socket, stat, sys
for p in sys.stdin.read().split("\0"):
    if not p:
        continue
    try:
        st = os.lstat(p)
    except OSError:
        continue
    m = st.st_mode
    if stat.S_ISREG(m):
        for how, flags in (("read", os.O_RDONLY), ("write", os.O_WRONLY)):
            try:
                os.close(os.open(p, flags | os.O_NOFOLLOW | os.O_NONBLOCK))
                print("LEAK", how, p)
            except OSError:
                pass
    elif stat.S_ISDIR(m):
        try:
            os.listdir(p)
            print("LEAK list", p)
        except OSError:
            pass
    elif stat.S_ISSOCK(m):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(p)
            print("LEAK connect", p)
        except OSError:
            pass
        finally:
            s.close()
"#;

/// Every path under `dir` (not following symlinks), at most `cap` of them; directories that
/// hold image or container content (layers, a container's upper and work dirs) are listed but
/// not entered: a layer's own modes (a 1777 /tmp) are the image's business, and their parents
/// are what must keep other users out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, cap: usize) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if out.len() >= cap {
            return;
        }
        let p = e.path();
        out.push(p.clone());
        let content = p.parent().is_some_and(|d| d.ends_with("storage/layers"))
            || ["upper", "work", "rootfs", "_data"].iter().any(|n| p.ends_with(n));
        if e.file_type().is_ok_and(|t| t.is_dir()) && !content {
            walk(&p, out, cap);
        }
    }
}

/// Runs [`PROBE_PY`] as `user` over `paths`; the `LEAK` lines.
fn probe_as(user: &str, paths: &[PathBuf]) -> Vec<String> {
    use std::io::Write;
    let mut c = Command::new("runuser")
        .args(["-u", user, "--", "python3", "-c", PROBE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runuser python3");
    let mut input = Vec::new();
    for p in paths {
        input.extend_from_slice(p.as_os_str().as_encoded_bytes());
        input.push(0);
    }
    c.stdin.take().unwrap().write_all(&input).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "probe as {user}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect()
}

fn user(name: &str) -> Option<nix::unistd::User> {
    let u = nix::unistd::User::from_name(name).ok().flatten();
    if u.is_none() {
        skip(&format!("no user {name} (tests/run-all.sh makes it)"));
    }
    u
}

/// covetest runs containers (detached with a published port and a network: keeper, network
/// helper, monitors with attach sockets), its world's root opened to everyone (as a home
/// directory often is); then every file, directory and socket cove made is tried as
/// covenosub, and as root the modes are checked: nothing another user can read, write, list
/// or connect to.
#[test]
fn another_user_reaches_nothing_of_a_users_state() {
    if !is_root() {
        println!("note: another_user_reaches_nothing_of_a_users_state runs in the root pass (covetest and covenosub)");
        return;
    }
    let (Some(owner), Some(_)) = (user("covetest"), user("covenosub")) else { return };
    let Some(w) = World::new_as("covetest") else { return };
    std::fs::set_permissions(w.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port().to_string();
    let publish = format!("127.0.0.1:{port}:80");
    w.ok(&["network", "create", "users-net"]);
    w.ok(&["run", "-d", "--name", "web", "--network", "users-net", "-p", &publish, "bb", "sleep", "120"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "tty",
        "-t",
        "-v",
        "users-vol:/v",
        "bb",
        "sh",
        "-c",
        "echo secret > /v/f; sleep 120",
    ]);
    w.ok(&["exec", "web", "true"]);
    let mut paths = vec![];
    for top in ["data", "run"] {
        let p = w.path().join(top);
        paths.push(p.clone());
        walk(&p, &mut paths, 5000);
    }
    let mut injected = 0;
    let mut leaks = vec![];
    // Modes, as root: cove's own top directories are the owner's and private; nothing of
    // cove's outside image and container content is writable by others.
    for top in ["data", "run"] {
        let m = std::fs::symlink_metadata(w.path().join(top)).unwrap();
        injected += 1;
        if m.uid() != owner.uid.as_raw() || m.mode() & 0o077 != 0 {
            leaks.push(format!("{top}: mode {:o} uid {}", m.mode() & 0o7777, m.uid()));
        }
    }
    let names = |want: &str| paths.iter().filter(|p| p.file_name().is_some_and(|n| n == want)).count();
    for want in ["state.db", "netd.sock", "attach.sock", "keeper.pid", "monitor.pid"] {
        assert!(names(want) > 0, "no {want} under {} to check: {paths:?}", w.path().display());
    }
    for p in &paths {
        let Ok(m) = std::fs::symlink_metadata(p) else { continue };
        if m.file_type().is_symlink() {
            continue;
        }
        injected += 1;
        if m.mode() & 0o002 != 0 && !m.file_type().is_char_device() {
            leaks.push(format!("{} is writable by others (mode {:o})", p.display(), m.mode() & 0o7777));
        }
    }
    // Access, as covenosub (a user with no ids of covetest's).
    // The probe itself works: a file left readable next to the state is found.
    let control = w.path().join("control");
    std::fs::write(&control, "x").unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
    let seen = probe_as("covenosub", std::slice::from_ref(&control));
    assert_eq!(seen, [format!("LEAK read {}", control.display())], "the probe does not see a readable file");
    let found = probe_as("covenosub", &paths);
    injected += paths.len();
    leaks.extend(found);
    report("escapes other users", injected, injected - leaks.len().min(injected), leaks.len(), &[]);
    w.ok(&["rm", "-f", "web", "tty"]);
    assert!(leaks.is_empty(), "another user reaches covetest's state:\n{}", leaks.join("\n"));
}

/// A data dir (`$XDG_DATA_HOME/cove`) that another user owns is refused with one line, and
/// nothing is written in it: the run dir's case is `run_dir_in_tmp_must_be_a_private_directory_of_the_user`.
#[test]
fn a_data_dir_owned_by_someone_else_is_refused() {
    if !is_root() {
        println!("note: a_data_dir_owned_by_someone_else_is_refused runs in the root pass (covetest and covenosub)");
        return;
    }
    let mut injected = 0;
    let mut leaks = vec![];
    for name in ["covetest", "covenosub"] {
        let Some(u) = user(name) else { continue };
        let home = tempfile::Builder::new().prefix("cove-users-").tempdir_in(common::tmp_base()).unwrap();
        nix::unistd::chown(home.path(), Some(u.uid), Some(u.gid)).unwrap();
        let run = home.path().join("run");
        std::fs::create_dir(&run).unwrap();
        nix::unistd::chown(&run, Some(u.uid), Some(u.gid)).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Another user's (root's here) private cove dir where this user's would be.
        let theirs = home.path().join("cove");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let o = Command::new("runuser")
            .args(["-u", name, "--"])
            .arg(bin())
            .arg("ps")
            .env_remove("COVE_ROOT")
            .env("XDG_DATA_HOME", home.path())
            .env("XDG_RUNTIME_DIR", &run)
            .env("HOME", format!("/home/{name}"))
            .env("COVE_KEEPER_IDLE_SECS", "2")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        injected += 1;
        let e = stderr(&o);
        if o.status.code() != Some(125) || e.lines().count() != 1 || !e.contains("owned by uid 0") {
            leaks.push(format!(
                "{name}: a data dir of root's was used or refused unclearly ({:?}): {e}",
                o.status.code()
            ));
        }
        if std::fs::read_dir(&theirs).unwrap().count() != 0 {
            leaks.push(format!("{name}: wrote into root's dir"));
        }
        let _ = Command::new("runuser")
            .args(["-u", name, "--"])
            .arg(bin())
            .args(["system", "migrate"])
            .env("COVE_ROOT", home.path().join("own"))
            .output();
    }
    report("escapes foreign state dirs", injected, injected - leaks.len().min(injected), leaks.len(), &[]);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// The owner of a listening socket in the host's /proc/net/{tcp,udp} at `port`, if any.
fn listener_uid(file: &str, port: u16) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local = f.get(1)?;
        let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        // TCP: LISTEN (0A); UDP: unconnected (07).
        (p == port && matches!(*f.get(3)?, "0A" | "07")).then(|| f.get(7)?.parse().ok())?
    })
}

/// A port covetest publishes is bound by covetest in the host's network namespace: the
/// listening socket's owner (in /proc/net/tcp and udp) is covetest's uid, never root's.
#[test]
fn published_ports_are_bound_as_the_user() {
    if !is_root() {
        println!("note: published_ports_are_bound_as_the_user runs in the root pass (as covetest and covenosub)");
        return;
    }
    let mut injected = 0;
    let mut leaks = vec![];
    for name in ["covetest", "covenosub"] {
        let Some(u) = user(name) else { continue };
        let Some(w) = World::new_as(name) else { continue };
        let (tcp, udp) = (free_port(), free_port());
        let p1 = format!("127.0.0.1:{tcp}:80");
        let p2 = format!("127.0.0.1:{udp}:53/udp");
        w.ok(&["run", "-d", "--name", "pub", "-p", &p1, "-p", &p2, "bb", "sleep", "60"]);
        for (file, port) in [("/proc/net/tcp", tcp), ("/proc/net/udp", udp)] {
            injected += 1;
            match listener_uid(file, port) {
                Some(uid) if uid == u.uid.as_raw() => {}
                other => leaks.push(format!("{name}: port {port} in {file} owned by {other:?}, not {}", u.uid)),
            }
        }
        w.ok(&["rm", "-f", "pub"]);
    }
    report("escapes port owners", injected, injected - leaks.len().min(injected), leaks.len(), &[]);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
