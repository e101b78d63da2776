//! What the engine calls: finds (or starts) the helper, sends it the table, hands it published
//! ports and takes them back. Every message goes through [`crate::proto`].

use crate::proto::{Port, Reply, Report, Request, Table};
use crate::{Error, Result, RunFiles};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

fn live(files: &RunFiles) -> Option<(i32, i32)> {
    files.live()
}

/// Whether the helper of the run directory `run` runs (some container is, or was a moment ago,
/// on a network).
pub fn running(run: &Path) -> bool {
    live(&RunFiles::new(run)).is_some()
}

/// The pid of the helper, if it runs.
pub fn pid(run: &Path) -> Option<i32> {
    live(&RunFiles::new(run)).map(|(p, _)| p)
}

/// A pidfd of the helper that runs now (readable once it has ended), its start time checked
/// before and after (a reused pid is not the helper): what a foreground `cove run` polls to
/// notice that the helper went away under its container.
pub fn watch_fd(run: &Path) -> Option<OwnedFd> {
    let files = RunFiles::new(run);
    let (pid, _) = live(&files)?;
    let fd = cove_sys::pidfd_open(pid).ok()?;
    (live(&files).map(|(p, _)| p) == Some(pid)).then_some(fd)
}

/// A handle on the rootless network namespace, starting the helper if needed: `start` starts
/// `cove __netd` detached and returns what it wrote on its report pipe ([`Report`]).
///
/// `recover` runs when this call started the helper, still under `netd.lock` and before any
/// other command can find the new helper: the engine re-wires there the containers that were
/// running on the helper that went away (killed, crashed), so no container started meanwhile
/// takes their addresses' bridges or their ports first.
pub fn rootless_netns(
    run: &Path,
    start: impl FnOnce() -> std::result::Result<String, String>,
    recover: impl FnOnce(std::os::fd::BorrowedFd<'_>),
) -> Result<OwnedFd> {
    let files = RunFiles::new(run);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(files.lock())
        .map_err(crate::io_err(format!("open {}", files.lock().display())))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Other(format!("lock netd.lock: {e}")))?;
    let (started, (pid, fd)) = match live(&files) {
        Some(x) => (false, x),
        None => {
            match Report::decode(&start().map_err(Error::Start)?) {
                Report::Ok => {}
                Report::Failed(e) => return Err(Error::Start(e)),
            }
            (true, live(&files).ok_or_else(|| Error::Start("it did not start".into()))?)
        }
    };
    let f = std::fs::File::open(format!("/proc/{pid}/fd/{fd}"))
        .map_err(crate::io_err(format!("open the network namespace of the helper (pid {pid})")))?;
    // Tell the helper it is in use, so it does not exit between now and the attach.
    let _ = std::fs::write(files.used(), "");
    if started {
        use std::os::fd::AsFd;
        recover(f.as_fd());
    }
    Ok(f.into())
}

fn connect(run: &Path) -> std::io::Result<UnixStream> {
    cove_sys::with_short_path(run, RunFiles::SOCK, |p| UnixStream::connect(p))
}

/// Sends the helper the networks and endpoints it serves (after a container joined or left a
/// network, or a network went), and waits until its DNS and ruleset follow. Nothing to do
/// when the helper is not running.
pub fn sync(run: &Path, table: &Table) -> Result<()> {
    let Ok(s) = connect(run) else { return Ok(()) };
    Request::Sync(table.clone()).send(&s)?;
    Reply::recv(&s)?.into_result()
}

/// [`sync`] of a table `build` reads from the database, both under `netd-sync.lock`: tables
/// then reach the helper in the order they were read. Without it a table read before a network
/// was created could arrive after one read since, and the helper, which removes the bridges a
/// table no longer names, would remove that network's bridge under its new containers.
pub fn sync_built<E: From<Error>>(
    run: &Path,
    build: impl FnOnce() -> std::result::Result<Table, E>,
) -> std::result::Result<(), E> {
    if !running(run) {
        return Ok(());
    }
    let files = RunFiles::new(run);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(files.sync_lock())
        .map_err(crate::io_err(format!("open {}", files.sync_lock().display())))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Other(format!("lock netd-sync.lock: {e}")))?;
    let t = build()?;
    Ok(sync(run, &t)?)
}

/// Hands bound host sockets to the helper (replacing what it served for this container).
pub fn register(run: &Path, container_id: &str, ports: Vec<(Port, OwnedFd)>) -> Result<()> {
    unregister(run, container_id);
    if ports.is_empty() {
        return Ok(());
    }
    let s = connect(run).map_err(crate::io_err("connect to the network helper"))?;
    for (port, fd) in ports {
        Request::Add { id: container_id.to_string(), port, fd }.send(&s)?;
    }
    Request::End.send(&s)?;
    match Reply::recv(&s)? {
        Reply::Ok | Reply::Data(_) => Ok(()),
        Reply::Err(e) => Err(Error::Refused(format!("the ports were refused: {e}"))),
    }
}

/// Asks the helper's mDNS a `cove mdns` question; the answer is JSON (a [`crate::proto::Listing`],
/// a list of records as text, or [`crate::proto::BrowsedView`]s).
pub fn mdns(run: &Path, ask: &crate::proto::Ask) -> Result<Vec<u8>> {
    let s = connect(run).map_err(crate::io_err("connect to the network helper"))?;
    Request::Mdns(ask.clone()).send(&s)?;
    match Reply::recv(&s)? {
        Reply::Data(body) => Ok(body),
        Reply::Ok => Ok(vec![]),
        Reply::Err(e) => Err(Error::Refused(e)),
    }
}

/// Stops serving the container's ports (no-op when the helper is gone).
pub fn unregister(run: &Path, container_id: &str) {
    if let Ok(s) = connect(run) {
        let _ = Request::Del { id: container_id.to_string() }
            .send(&s)
            .and_then(|_| Request::End.send(&s))
            .and_then(|_| Reply::recv(&s));
    }
}

/// Stops the helper (tests and `system migrate`).
pub fn stop(run: &Path) {
    let files = RunFiles::new(run);
    if let Some((pid, _)) = live(&files) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_file(files.pid());
    }
}
