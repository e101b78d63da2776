//! Security regression tests (issue 21): see the functions below; each reproduces an attack.
//!
//! Without `-t`, `cove run` and `cove exec` handed the caller's own terminal to the container:
//! `stty -echo` inside outlived it, and a process left behind by `exec` read the next line
//! typed at the host's shell. The container must get pipes that cove relays.

#[allow(unused_imports)]
use super::*;
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// A pseudo-terminal standing for the user's: cove gets the slave as stdin and stdout.
struct Terminal {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Terminal {
    fn new() -> Terminal {
        let p = nix::pty::openpty(None, None).expect("openpty");
        Terminal { master: p.master, slave: p.slave }
    }

    fn echo(&self) -> bool {
        tcgetattr(self.slave.as_fd()).expect("tcgetattr").local_flags.contains(LocalFlags::ECHO)
    }

    /// Runs `cmd` with the terminal as stdin and stdout, waits (at most 20 s); returns the
    /// exit code, how long it took and its stderr.
    fn run(&self, mut cmd: Command) -> (Option<i32>, Duration, String) {
        use std::io::{Read, Seek};
        let dup = || Stdio::from(self.slave.try_clone().expect("dup"));
        // A file, not a pipe: what the container leaves behind may hold it open.
        let mut err = tempfile::tempfile().unwrap();
        let t = Instant::now();
        let mut child = cmd.stdin(dup()).stdout(dup()).stderr(err.try_clone().unwrap()).spawn().expect("spawn cove");
        while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = t.elapsed();
        let _ = child.kill();
        let status = child.wait().unwrap();
        let mut text = String::new();
        err.rewind().and_then(|_| err.read_to_string(&mut text)).unwrap();
        (status.code(), took, text)
    }

    /// What is ready on `fd` within `ms` (the master: what was written to the terminal; the
    /// slave: a line typed at it).
    fn read_ready(fd: std::os::fd::BorrowedFd<'_>, ms: u16) -> String {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
            if poll(&mut p, PollTimeout::from(ms)).unwrap_or(0) == 0 {
                break;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[test]
fn run_without_t_gets_pipes_not_the_callers_terminal() {
    let Some(w) = World::new() else { return };
    let term = Terminal::new();
    assert!(term.echo());
    // stty on the container's stdin (with -i) and on its stdout: neither may be the terminal.
    for extra in [&["-i"][..], &[][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "bb",
            "sh",
            "-c",
            "stty -echo; stty -echo <&1; [ -t 0 ] && echo STDIN-IS-A-TTY; [ -t 1 ] && echo STDOUT-IS-A-TTY; echo done",
        ]);
        let (code, _, err) = term.run(w.cmd(&args));
        let shown = Terminal::read_ready(term.master.as_fd(), 300);
        assert!(term.echo(), "cove {args:?} turned the caller's terminal's ECHO off (exit {code:?}, {err})");
        assert!(shown.contains("done") && !shown.contains("IS-A-TTY"), "cove {args:?}: {shown:?} {err}");
    }
    // Output, stream separation and exit codes as before.
    let o = w.run_sh(&[], "echo out; echo err >&2; exit 3");
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref(), stderr(&o).as_str()),
        (Some(3), "out\n", "err\n")
    );
    let big = w.sh_ok(&[], "head -c 3000000 /dev/zero");
    assert_eq!(big.len(), 3000000);
    // cove's stdout closed early (`| head`): the container gets SIGPIPE as it did writing to
    // that pipe itself, and cove lives on to report and clean up.
    let mut child = w
        .cmd(&["run", "--rm", "bb", "sh", "-c", "yes; echo yes-exit=$? >&2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut first = [0u8; 10];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(0), "yes-exit=141"));
    // -i relays stdin, and the container sees its end.
    let mut c = w.cmd(&["run", "-i", "--rm", "bb", "sh", "-c", "wc -c; cat"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&vec![b'x'; 5_000_000]).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "5000000", "{}", stderr(&o));
    let mut c = w.cmd(&["run", "-i", "--rm", "bb", "cat"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    }
    assert_eq!(String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout), "hi\n");
}

#[test]
fn exec_leaves_no_reader_on_the_callers_terminal() {
    let Some(w) = World::new() else { return };
    w.ok(&["run", "-d", "--name", "victim", "bb", "sleep", "300"]);
    let term = Terminal::new();
    // A background reader left behind with the exec's stdin (fd 3: ash gives `&` jobs
    // /dev/null as stdin), and a background writer on its stdout.
    let script = "exec 3<&0; (read l <&3; echo \"got:$l\" > /tmp/x) & (sleep 3; echo late) & echo started";
    let (code, took, err) = term.run(w.cmd(&["exec", "-i", "victim", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(3), "cove exec waited {took:?} for the processes it left behind");
    assert!(Terminal::read_ready(term.master.as_fd(), 100).contains("started"));
    // The user types a line at the host's shell.
    nix::unistd::write(&term.master, b"secret-line\n").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let x = w.cove(&["exec", "victim", "cat", "/tmp/x"]);
    let x = String::from_utf8_lossy(&x.stdout);
    assert!(!x.contains("secret"), "a process in the container read the line typed at the host's terminal: {x:?}");
    let host = Terminal::read_ready(term.slave.as_fd(), 500);
    assert!(host.contains("secret-line"), "the host's shell should get its line: {host:?}");
    assert!(term.echo());
    let _ = w.cove(&["rm", "-f", "victim"]);
}
