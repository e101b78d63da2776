//! Regression tests for defects found using cove as a Docker user would (issue 13): state and
//! lifecycle.

use super::*;

#[test]
fn a_bad_stop_signal_is_refused_before_anything_exists() {
    let Some(w) = World::new() else { return };
    for verb in ["create", "run"] {
        let mut args = vec![verb];
        if verb == "run" {
            args.push("-d");
        }
        args.extend_from_slice(&["--name", "sig", "--stop-signal", "BOGUS", "bb", "sleep", "100"]);
        let o = w.cove(&args);
        assert_eq!(o.status.code(), Some(125), "{verb} --stop-signal BOGUS: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("BOGUS"), "{err}");
        assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "nothing was created by {verb}");
    }
    // Names and numbers, with or without SIG, are signals; stop uses the one given.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--stop-signal",
        "usr1",
        "bb",
        "sh",
        "-c",
        "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done",
    ]);
    assert!(wait_until(|| w.ok(&["logs", "sig"]).contains("ready"), 10), "the trap is set");
    w.ok(&["stop", "-t", "10", "sig"]);
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.ExitCode}}", "sig"]).trim(), "7");
}

#[test]
fn run_detached_with_rm_removes_the_container_once_it_exits() {
    let Some(w) = World::new() else { return };
    let containers = w.path().join("data/containers");
    let count = || std::fs::read_dir(&containers).map(|d| d.count()).unwrap_or(0);
    // Exits by itself: `wait` still gets the code, then nothing is left.
    let id = w.ok(&["run", "-d", "--rm", "bb", "sh", "-c", "sleep 0.3; exit 4"]);
    assert_eq!(w.ok(&["wait", id.trim()]).trim(), "4");
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "removed after it exited");
    assert_eq!(count(), 0, "its files are gone too");
    // Stopped by the user.
    w.ok(&["run", "-d", "--rm", "--name", "gone", "bb", "sleep", "100"]);
    w.ok(&["stop", "-t", "1", "gone"]);
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "removed after stop");
    assert_eq!(count(), 0);
    // The name is free again.
    w.ok(&["run", "-d", "--rm", "--name", "gone", "bb", "true"]);
    assert!(wait_until(|| w.ok(&["ps", "-aq"]).trim().is_empty(), 10), "removed after a quick exit");
    // A restart policy and --rm contradict each other (Docker refuses the pair too).
    let o = w.cove(&["run", "-d", "--rm", "--restart", "always", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("conflicting options: --restart and --rm"), "{}", stderr(&o));
    // Without --rm an exited container stays.
    w.ok(&["run", "-d", "--name", "kept", "bb", "true"]);
    assert_eq!(w.ok(&["wait", "kept"]).trim(), "0");
    assert_eq!(w.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(), "kept");
}

#[test]
fn a_killed_foreground_run_rm_releases_its_port_and_goes_away() {
    let Some(w) = World::new() else { return };
    let port = free_port();
    let publish = format!("{port}:80");
    let mut cli = w
        .cmd(&["run", "--rm", "-p", &publish, "bb", "sleep", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cove run");
    assert!(wait_until(|| std::net::TcpListener::bind(("127.0.0.1", port)).is_err(), 20), "the port was published");
    cli.kill().expect("SIGKILL the CLI");
    let _ = cli.wait();
    // The container dies with its CLI (parent-death signal); the next command notices.
    assert!(
        wait_until(|| w.ok(&["ps", "-aq"]).trim().is_empty(), 20),
        "a --rm container whose CLI was killed is removed"
    );
    let released = wait_until(|| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), 20);
    let holders = Command::new("ss")
        .args(["-Htlnp", &format!("sport = :{port}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(released, "its published port {port} was released; held by: {holders}");
}

#[test]
fn dash_it_without_a_terminal_is_refused_before_anything_exists() {
    let Some(w) = World::new() else { return };
    // The harness gives cove /dev/null as stdin: not a terminal (a pipe behaves the same).
    for args in [&["run", "--rm", "-it", "bb", "cat"][..], &["run", "-it", "--name", "x", "bb", "true"][..]] {
        let o = w.cmd(args).stdin(Stdio::piped()).output().expect("run cove");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim(), "cove: error: the input device is not a TTY");
    }
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "nothing was created");
    // Detached, or -t alone, needs no terminal on this side.
    w.ok(&["run", "-d", "-it", "--name", "dt", "bb", "true"]);
    let o = w.cove(&["run", "--rm", "-t", "bb", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    w.ok(&["run", "-d", "--name", "up", "bb", "sleep", "100"]);
    let o = w.cove(&["exec", "-it", "up", "true"]);
    assert_eq!(
        (o.status.code(), stderr(&o).trim().to_string()),
        (Some(1), "cove: error: the input device is not a TTY".to_string())
    );
}

#[test]
fn a_port_in_use_leaves_a_created_container_that_starts_once_the_port_is_free() {
    let Some(w) = World::new() else { return };
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    let publish = format!("{port}:80");
    for (name, detach) in [("pd", true), ("pfg", false)] {
        let mut args = vec!["run", "--name", name, "-p", &publish];
        if detach {
            args.push("-d");
        }
        args.extend_from_slice(&["bb", "sleep", "100"]);
        let o = w.cove(&args);
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        let status = w.ok(&["ps", "-a", "--filter", &format!("name={name}"), "--format", "{{.Status}}"]);
        assert_eq!(status.trim(), "Created", "as Docker leaves it ({name})");
        assert_eq!(w.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name]).trim(), "created 125");
    }
    drop(taken);
    w.ok(&["start", "pd"]);
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.Status}}", "pd"]).trim(), "running");
    // A command that cannot be found leaves it Created too (Docker: exit 127, Created).
    let o = w.cove(&["run", "--name", "nf", "bb", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.Status}}", "nf"]).trim(), "created");
}

#[test]
fn a_killed_foreground_run_releases_its_port_and_is_exited() {
    let Some(w) = World::new() else { return };
    let port = free_port();
    let publish = format!("{port}:80");
    let mut cli = w
        .cmd(&["run", "--name", "fgk", "-p", &publish, "bb", "sleep", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cove run");
    assert!(wait_until(|| w.ok(&["ps", "--format", "{{.Names}}"]).contains("fgk"), 20), "it runs");
    cli.kill().expect("SIGKILL the CLI");
    let _ = cli.wait();
    assert!(
        wait_until(|| w.ok(&["inspect", "-f", "{{.State.Status}}", "fgk"]).trim() == "exited", 20),
        "the next command sees it exited"
    );
    // Another container (of this world, with the helper still up) can take the port.
    w.ok(&["run", "-d", "--name", "next", "-p", &publish, "bb", "sleep", "100"]);
}

#[test]
fn a_killed_import_leaves_nothing_behind_at_the_next_command() {
    let Some(w) = World::new() else { return };
    let tmp = w.path().join("data/storage/tmp");
    let entries = || std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(), 0);
    // The import reads from a FIFO the test feeds half a tarball into, then is killed.
    let fifo = w.path().join("feed");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo");
    let mut cove = w
        .cmd(&["import", fifo.to_str().unwrap(), "half"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cove import");
    let tar = std::fs::read(rootfs().expect("rootfs")).expect("read the rootfs tarball");
    let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open the fifo");
    std::io::Write::write_all(&mut f, &tar[..tar.len() / 2]).expect("feed half");
    assert!(wait_until(|| entries() > 0, 10), "the import is staging");
    cove.kill().expect("SIGKILL the import");
    let _ = cove.wait();
    drop(f);
    assert!(entries() > 0, "the killed import left its staging behind");
    let images = w.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("half"), "{images}");
    assert_eq!(entries(), 0, "the next command removed what the dead import left");
}

#[test]
fn another_runtime_dir_does_not_rewrite_running_containers() {
    // Rootless only (root's run dir is /run/cove whatever the environment says): as the test
    // user, or as covetest in the root pass.
    let Some(w) = rootless_world() else { return };
    let owner = std::fs::metadata(w.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    let dir = |name: &str| {
        let d = w.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        nix::unistd::chown(&d, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        d
    };
    let (data, login, su) = (dir("xdg-data"), dir("xdg-run-login"), dir("xdg-run-su"));
    // As a login shell (XDG_RUNTIME_DIR of logind) and as `su`/cron (another one): no COVE_ROOT.
    let cove = |run: &Path, args: &[&str]| {
        let o = w
            .cmd(args)
            .env_remove("COVE_ROOT")
            .env("XDG_DATA_HOME", &data)
            .env("XDG_RUNTIME_DIR", run)
            .output()
            .expect("run cove");
        assert!(o.status.success(), "{args:?} with XDG_RUNTIME_DIR={}: {}", run.display(), stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    cove(&login, &["import", rootfs().unwrap().to_str().unwrap(), "bb"]);
    cove(&login, &["run", "-d", "--name", "longrun", "bb", "sleep", "300"]);
    assert!(cove(&su, &["ps", "-a"]).contains("Up "), "the other environment sees it running");
    assert_eq!(cove(&su, &["exec", "longrun", "echo", "in"]).trim(), "in", "and can exec into it");
    assert!(cove(&login, &["ps", "-a"]).contains("Up "), "nothing was rewritten");
    cove(&su, &["stop", "-t", "1", "longrun"]);
    assert_eq!(cove(&login, &["inspect", "-f", "{{.State.Status}}", "longrun"]).trim(), "exited");
    cove(&login, &["rm", "longrun"]);
    assert!(
        std::fs::read_dir(su.join("cove")).map(|d| d.count() == 0).unwrap_or(true),
        "nothing of cove's runs from the other run dir"
    );
}

#[test]
fn a_foreground_container_keeps_its_logs_and_starts_again() {
    let Some(w) = World::new() else { return };
    let o = w.cove(&["run", "--name", "fg", "bb", "sh", "-c", "echo out-$((1+1)); echo err >&2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-2\n", "still printed to the caller");
    let logs = w.cove(&["logs", "fg"]);
    assert_eq!(
        (String::from_utf8_lossy(&logs.stdout).into_owned(), stderr(&logs)),
        ("out-2\n".to_string(), "err\n".to_string()),
        "cove logs shows both streams"
    );
    // Started again: detached, by the monitor, appending to the same log.
    w.ok(&["start", "fg"]);
    assert_eq!(w.ok(&["wait", "fg"]).trim(), "0");
    assert_eq!(w.ok(&["logs", "fg"]), "out-2\nout-2\n");
    // A running foreground container restarted by `restart` comes back running (detached).
    let mut cli = w
        .cmd(&["run", "--name", "fgr", "bb", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    assert!(wait_until(|| w.ok(&["ps", "--format", "{{.Names}}"]).contains("fgr"), 20));
    w.ok(&["restart", "-t", "1", "fgr"]);
    let _ = cli.wait();
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.Status}}", "fgr"]).trim(), "running");
    // With -t the terminal's output is logged too.
    let o = w.cove(&["run", "--name", "fgt", "-t", "bb", "echo", "tty-out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(w.ok(&["logs", "fgt"]).contains("tty-out"));
}

#[test]
fn a_killed_keeper_is_replaced_by_one_in_the_same_namespace() {
    // Rootless only (root has no keeper): as the test user, or as covetest in the root pass.
    let Some(w) = rootless_world() else { return };
    let ns = |pid: &str| {
        std::fs::read_link(format!("/proc/{}/ns/user", pid.trim())).map(|l| l.display().to_string()).unwrap_or_default()
    };
    let keeper = || std::fs::read_to_string(w.path().join("run/keeper.pid")).unwrap_or_default().trim().to_string();
    w.ok(&["network", "create", "--subnet", "10.98.9.0/24", "kn"]);
    let id = w.ok(&["run", "-d", "--name", "up", "--network", "kn", "bb", "sleep", "300"]);
    w.ok(&["create", "--name", "later", "--network", "kn", "bb", "sleep", "300"]);
    let pid1 = std::fs::read_to_string(w.path().join("run/containers").join(id.trim()).join("pid")).unwrap();
    let pid1 = pid1.split_whitespace().next().unwrap().to_string();
    let old = keeper();
    assert_eq!(ns(&old), ns(&pid1), "the container lives in the keeper's namespace");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.parse().unwrap()), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    // Every command works on: exec into the running one, start the stopped one on the same
    // network (the helper's namespace), a new container.
    assert_eq!(w.ok(&["exec", "up", "echo", "in"]).trim(), "in");
    let new = keeper();
    assert_ne!(new, old, "a new keeper");
    assert_eq!(ns(&new), ns(&pid1), "in the namespace the containers still live in");
    w.ok(&["start", "later"]);
    assert!(w.ok(&["exec", "later", "nslookup", "up", "10.98.9.1"]).contains("10.98.9.2"));
    w.ok(&["run", "--rm", "--network", "kn", "bb", "true"]);
}

/// `exec` while a restart policy is between two runs: Docker's "is restarting" answer, never
/// "is not running" for a container `ps` shows as up.
#[test]
fn exec_between_restarts_says_restarting() {
    let Some(w) = World::new() else { return };
    w.ok(&["run", "-d", "--restart", "always", "--name", "flap", "bb", "sh", "-c", "sleep 0.3; exit 1"]);
    let (mut restarting, mut not_running) = (0, vec![]);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(8) && restarting < 3 {
        let o = w.cove(&["exec", "flap", "true"]);
        let e = stderr(&o);
        if e.contains("is restarting, wait until the container is running") {
            restarting += 1;
        } else if e.contains("is not running") {
            not_running.push(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    w.ok(&["rm", "-f", "flap"]);
    assert!(not_running.is_empty(), "{not_running:?}");
    assert!(restarting > 0, "an exec between two runs was seen");
}
