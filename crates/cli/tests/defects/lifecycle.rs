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
    w.ok(&["run", "-d", "--name", "sig", "--stop-signal", "usr1", "bb", "sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done"]);
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
    let mut cli = w.cmd(&["run", "--rm", "-p", &publish, "bb", "sleep", "100"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start cove run");
    assert!(wait_until(|| std::net::TcpListener::bind(("127.0.0.1", port)).is_err(), 20), "the port was published");
    cli.kill().expect("SIGKILL the CLI");
    let _ = cli.wait();
    // The container dies with its CLI (parent-death signal); the next command notices.
    assert!(wait_until(|| w.ok(&["ps", "-aq"]).trim().is_empty(), 20), "a --rm container whose CLI was killed is removed");
    let released = wait_until(|| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), 20);
    let holders = Command::new("ss").args(["-Htlnp", &format!("sport = :{port}")]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
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
    assert_eq!((o.status.code(), stderr(&o).trim().to_string()), (Some(1), "cove: error: the input device is not a TTY".to_string()));
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
    let mut cli = w.cmd(&["run", "--name", "fgk", "-p", &publish, "bb", "sleep", "100"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start cove run");
    assert!(wait_until(|| w.ok(&["ps", "--format", "{{.Names}}"]).contains("fgk"), 20), "it runs");
    cli.kill().expect("SIGKILL the CLI");
    let _ = cli.wait();
    assert!(wait_until(|| w.ok(&["inspect", "-f", "{{.State.Status}}", "fgk"]).trim() == "exited", 20), "the next command sees it exited");
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
    let mut cove = w.cmd(&["import", fifo.to_str().unwrap(), "half"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start cove import");
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
