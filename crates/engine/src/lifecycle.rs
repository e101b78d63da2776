//! Docker's lifecycle verbs without a daemon: detached run, create/start, stop/kill, wait,
//! rm, logs, exec, top, restart, prune. Each first folds what monitors left in the runtime
//! dir into the state database (`reconcile`); `create` is the container module's.

use crate::db::{ContainerRow, ContainerState};
use crate::spec::RunRequest;
use crate::state::Engine;
use crate::{Error, IoContext, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

pub use crate::plan::parse_signal;

pub use crate::container::create;

/// Folds what monitors recorded while no command ran into the database
/// ([`crate::reconcile`]), then starts the network helper again if it is gone while containers
/// run on networks, which wires them back (`network::recover`): what every command does first.
pub fn reconcile(eng: &mut Engine) -> Result<()> {
    crate::reconcile::reconcile(eng)?;
    if let Err(e) = crate::network::recover(eng) {
        crate::warn_user(format_args!("the network helper had gone and could not be started again: {e}"));
    }
    Ok(())
}
use crate::reconcile::{delete, reconcile_collect};

/// Starts the monitor for a created or exited container and waits until the container's
/// command was exec'd (or failed). Returns PID 1's pid.
pub fn start(eng: &mut Engine, key: &str) -> Result<i32> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state == ContainerState::Running {
        return Ok(c.pid.unwrap_or(0) as i32);
    }
    let dir = eng.dirs.container(&c.id);
    let rd = eng.dirs.container_run(&c.id);
    let _ = std::fs::remove_dir_all(&rd);
    std::fs::create_dir_all(&rd).ctx(|| format!("create {}", rd.display()))?;
    cove_sys::fault::point("start.before-monitor");
    let msg = crate::spawn_helper("cove-monitor", "__monitor", &[dir.display().to_string(), rd.display().to_string()])?;
    if let Some(pid) = msg.strip_prefix("OK ").and_then(|p| p.trim().parse::<i32>().ok()) {
        cove_sys::fault::point("start.after-monitor");
        eng.db.set_container_state(&c.id, ContainerState::Running, Some(pid as i64), None)?;
        cove_sys::fault::point("start.after-state");
        return Ok(pid);
    }
    let text = msg.strip_prefix('E').unwrap_or(&msg);
    let (code, m) = text.split_once(' ').unwrap_or(("125", text));
    let code: i32 = code.parse().unwrap_or(125);
    // The container never ran: as Docker, one that was only created stays Created (name kept,
    // exit code recorded for inspect; `start` again or `rm` is the way out), one that ran
    // before stays Exited. Its run dir goes once the monitor is gone, so no later reconcile
    // reads the monitor's files as a run that ended.
    let t0 = Instant::now();
    while rd.live_monitor().is_some() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if rd.live_monitor().is_none() {
        let _ = std::fs::remove_dir_all(&rd);
    }
    let state = if c.state == ContainerState::Created { ContainerState::Created } else { ContainerState::Exited };
    eng.db.set_container_state(&c.id, state, None, Some(code as i64))?;
    let m = if m.is_empty() { "the monitor failed to start (see COVE_LOG=debug)".to_string() } else { m.to_string() };
    Err(Error::Runtime(cove_runtime::Error::Child { message: m, exit_code: code }))
}

/// `cove run -d`: create, start, return the id.
pub fn run_detached(eng: &mut Engine, req: &RunRequest) -> Result<String> {
    let id = create(eng, req)?;
    match start(eng, &id) {
        Ok(_) => Ok(id),
        Err(e) => {
            if req.rm {
                let _ = remove(eng, &id, true);
            }
            Err(e)
        }
    }
}

fn is_running(eng: &mut Engine, id: &str) -> Result<bool> {
    reconcile(eng)?;
    Ok(eng.db.container(id)?.is_some_and(|c| c.state == ContainerState::Running))
}

/// Waits until the container is no longer running, up to `limit`.
fn wait_exit(eng: &mut Engine, id: &str, limit: Duration) -> Result<bool> {
    let t0 = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        if !is_running(eng, id)? {
            return Ok(true);
        }
        if t0.elapsed() >= limit {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Sends `sig` to the container's PID 1 (after marking it stopped by the user, so restart
/// policies leave it alone).
pub fn kill(eng: &mut Engine, key: &str, sig: Signal) -> Result<String> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let rd = eng.dirs.container_run(&c.id);
    let pid = (c.state == ContainerState::Running).then(|| rd.live_pid()).flatten();
    let Some(pid) = pid else {
        // Between two runs of a restart policy (PID 1 gone, its monitor waiting to start it
        // again): marking it stopped ends it, as Docker's stop does.
        if c.state == ContainerState::Running && rd.live_monitor().is_some() {
            rd.mark_stopped();
            return Ok(c.id);
        }
        return Err(Error::Conflict(format!("container {} is not running", c.name)));
    };
    rd.mark_stopped();
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(|e| Error::Other(format!("kill {}: {e}", c.name)))?;
    Ok(c.id)
}

/// `cove stop`: StopSignal (default SIGTERM), wait `timeout`, then SIGKILL.
pub fn stop(eng: &mut Engine, key: &str, timeout: Option<i64>) -> Result<()> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state != ContainerState::Running {
        return Ok(()); // Docker: stopping a stopped container succeeds
    }
    let req = c.request()?;
    // Checked by `prepare`: one that no longer parses is a corrupt row.
    let sig = req
        .stop_signal
        .as_deref()
        .map(parse_signal)
        .transpose()
        .map_err(|e| Error::Corrupt(format!("container {} has a corrupt stop signal: {e}", c.name)))?
        .unwrap_or(Signal::SIGTERM);
    let timeout = timeout.or(req.stop_timeout).unwrap_or(10).max(0) as u64;
    kill(eng, &c.id, sig)?;
    if wait_exit(eng, &c.id, Duration::from_secs(timeout))? {
        return Ok(());
    }
    let _ = kill(eng, &c.id, Signal::SIGKILL);
    if !wait_exit(eng, &c.id, Duration::from_secs(10))? {
        return Err(Error::Other(format!("container {} did not exit after SIGKILL", c.name)));
    }
    Ok(())
}

/// `cove wait`: blocks until the container exits; returns its exit code.
pub fn wait(eng: &mut Engine, key: &str) -> Result<i64> {
    let c = eng.db.find_container(key)?;
    loop {
        // A `--rm` container is removed by the reconcile that sees it exit: its code comes
        // from there.
        if let Some((_, code)) = reconcile_collect(eng)?.into_iter().find(|(id, _)| *id == c.id) {
            return Ok(code);
        }
        if !eng
            .db
            .container(&c.id)?
            .is_some_and(|c| c.state == ContainerState::Running || c.state == ContainerState::Restarting)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = eng.db.container(&c.id)?.ok_or_else(|| Error::NotFound(format!("no such container: {key}")))?;
    Ok(c.exit_code.unwrap_or(0))
}

/// `cove rm [-f]`: removes the container (killing it first with `force`).
pub fn remove(eng: &mut Engine, key: &str, force: bool) -> Result<String> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let rd = eng.dirs.container_run(&c.id);
    let running = c.state == ContainerState::Running || rd.live_monitor().is_some();
    if running {
        if !force {
            return Err(Error::Conflict(format!(
                "cannot remove container {:?}: container is running: stop the container before removing or force remove",
                c.name
            )));
        }
        rd.mark_stopped();
        if let Some(pid) = rd.live_pid() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // The monitor follows its container (and SIGKILL of the monitor takes the container
        // down through the parent-death signal).
        let t0 = Instant::now();
        while rd.live_monitor().is_some() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(m) = rd.live_monitor() {
            let _ = nix::sys::signal::kill(Pid::from_raw(m), Signal::SIGKILL);
        }
        if let Some(pid) = rd.live_pid() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        cove_sys::fault::point("rm.after-kill");
    }
    delete(eng, &c.id, false)?;
    Ok(c.id)
}

/// `cove container prune`: removes every container that is not running.
pub fn prune(eng: &mut Engine) -> Result<Vec<String>> {
    reconcile(eng)?;
    let mut out = vec![];
    for c in eng.db.containers()? {
        if c.state != ContainerState::Running && eng.dirs.container_run(&c.id).live_monitor().is_none() {
            out.push(remove(eng, &c.id, false)?);
        }
    }
    Ok(out)
}

/// Options of `cove logs`.
#[derive(Debug, Default, Clone)]
pub struct LogsOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub timestamps: bool,
}

/// `cove logs`: writes stdout records to `out` and stderr records to `err`.
pub fn logs(
    eng: &mut Engine,
    key: &str,
    o: &LogsOptions,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> Result<()> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let path = eng.dirs.container(&c.id).join("container.log");
    let emit = |r: &crate::logs::Record, out: &mut dyn std::io::Write, err: &mut dyn std::io::Write| -> Result<bool> {
        let t = crate::db::parse_rfc3339(&r.time).unwrap_or(0);
        if o.since.is_some_and(|s| t < s) || o.until.is_some_and(|u| t > u) {
            return Ok(true);
        }
        let w: &mut dyn std::io::Write = if r.stream == "stderr" { err } else { out };
        let res = if o.timestamps { write!(w, "{} {}", r.time, r.log) } else { write!(w, "{}", r.log) };
        // A closed pipe (`cove logs -f | head`) ends the command quietly.
        Ok(res.and_then(|_| w.flush()).is_ok())
    };
    let all = crate::logs::read_all(&path);
    let skip = o.tail.map(|n| all.len().saturating_sub(n)).unwrap_or(0);
    for r in &all[skip..] {
        if !emit(r, out, err)? {
            return Ok(());
        }
    }
    if !o.follow {
        return Ok(());
    }
    // Follow: read new lines from the current file; reopen after a rotation.
    let mut file = std::fs::File::open(&path).ok();
    let mut pos = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
    let mut pending = String::new();
    loop {
        let running = is_running(eng, &c.id)?;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            file = std::fs::File::open(&path).ok();
            pos = 0;
        }
        if let Some(f) = file.as_mut() {
            use std::io::{Seek, SeekFrom};
            let _ = f.seek(SeekFrom::Start(pos));
            let mut chunk = String::new();
            if let Ok(n) = f.read_to_string(&mut chunk) {
                pos += n as u64;
                pending.push_str(&chunk);
            }
        } else {
            file = std::fs::File::open(&path).ok();
        }
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            if let Ok(r) = serde_json::from_str::<crate::logs::Record>(&line) {
                if !emit(&r, out, err)? {
                    return Ok(());
                }
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Options of `cove exec`.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub interactive: bool,
    pub privileged: bool,
}

/// `cove exec`: runs a command in a running container, returns its exit code.
pub fn exec(eng: &mut Engine, key: &str, o: &ExecOptions) -> Result<i32> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let rd = eng.dirs.container_run(&c.id);
    let pid = (c.state == ContainerState::Running).then(|| rd.live_pid()).flatten().ok_or_else(|| {
        // Its monitor is between two runs of a restart policy (Docker's words for that).
        if c.state == ContainerState::Running && rd.live_monitor().is_some() {
            Error::Conflict(format!("container {} is restarting, wait until the container is running", c.name))
        } else {
            Error::Conflict(format!("container {} is not running", c.name))
        }
    })?;
    if o.args.is_empty() {
        return Err(Error::Invalid("no command specified".into()));
    }
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(
        &std::fs::read(eng.dirs.container(&c.id).join("config.json")).ctx(|| "read config.json".into())?,
    )
    .map_err(|e| Error::Corrupt(format!("container {} has a corrupt config.json: {e}", c.name)))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Corrupt(format!("container {} has a config.json without a process", c.name)))?;
    process.set_args(Some(o.args.clone()));
    process.set_terminal(Some(o.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &o.env {
        let k = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(k));
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    if let Some(u) = &o.user {
        let img = eng
            .db
            .image(&c.image_id)?
            .ok_or_else(|| Error::NotFound(format!("image of container {} is gone", c.name)))?;
        // The container's generated passwd/group (when its user was synthesized) are what it
        // sees; else the image's.
        let dir = eng.dirs.container(&c.id);
        let generated = dir.join("passwd").exists();
        let read = |name: &str, path: &str| -> String {
            if generated {
                std::fs::read_to_string(dir.join(name)).unwrap_or_default()
            } else {
                crate::images::read_image_userdb(&eng.store, &img, path)
            }
        };
        let (passwd, group) = (read("passwd", "/etc/passwd"), read("group", "/etc/group"));
        let r = crate::userdb::resolve(u, &passwd, &group)?;
        let mut user = oci_spec::runtime::User::default();
        user.set_uid(r.uid);
        user.set_gid(r.gid);
        user.set_additional_gids(Some(r.additional_gids.clone()));
        process.set_user(user);
        let (name, home) = match &r.entry {
            Some(e) => (e.name.clone(), e.home.clone()),
            None if r.uid == 0 => ("root".to_string(), "/root".to_string()),
            None => {
                // A new id for this exec: give it an entry in the container's generated passwd
                // (bind-mounted, so appending in place is visible inside). Its HOME is /tmp: no
                // new mount can be added to a running container.
                let name = crate::identity::synthesized_name(r.uid);
                if generated {
                    use std::io::Write;
                    let line = format!("{name}:x:{}:{}:{name}:/tmp:/bin/sh\n", r.uid, r.gid);
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(dir.join("passwd"))
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                        .ctx(|| "update the container's passwd".into())?;
                }
                (name, "/tmp".to_string())
            }
        };
        for (k, v) in [("HOME", home), ("USER", name.clone()), ("LOGNAME", name)] {
            if !o.env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.retain(|x| x.split('=').next() != Some(k));
                env.push(format!("{k}={v}"));
            }
        }
        if r.uid != 0 {
            if let Some(mut caps) = process.capabilities().clone() {
                caps.set_effective(Some(Default::default()));
                caps.set_permitted(Some(Default::default()));
                process.set_capabilities(Some(caps));
            }
        }
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process.set_env(Some(env));
    if let Some(w) = &o.workdir {
        process.set_cwd(w.into());
    }
    let seccomp = if o.privileged { None } else { spec.linux().as_ref().and_then(|l| l.seccomp().clone()) };
    // Never cove's own descriptors: pipes without -t, a pty of the container's with it.
    let (stdio, pipes) = crate::tty::Relay::new(o.tty, o.interactive)?;
    let sfd = crate::tty::block_signals()?;
    // As root the process joins the container's cgroup before it enters the namespaces: its
    // device rules (and limits) hold for it too; an exec'd process outside it opened any
    // device node the container had. Rootless containers have no device rules to escape.
    let cgroup_procs: Vec<std::path::PathBuf> = if eng.dirs.rootless {
        vec![]
    } else {
        cove_cgroups::Cgroup::open(&c.id, &cove_cgroups::detect(false))
            .map(|cg| cg.paths().into_iter().map(|d| d.join("cgroup.procs")).collect())
            .unwrap_or_default()
    };
    let j = cove_runtime::join::spawn_in(
        Pid::from_raw(pid),
        &process,
        seccomp.as_ref(),
        stdio,
        Some(&eng.dirs.seccomp_cache()),
        &cgroup_procs,
    )?;
    crate::tty::wait_foreground(
        j.pid,
        sfd,
        pipes.or(j.pty_master.map(crate::tty::Relay::Pty)),
        o.interactive,
        None,
        None,
    )
}

/// `cove top`: the container's processes (pid as seen on the host, user, time, command).
pub fn top(eng: &mut Engine, key: &str) -> Result<Vec<[String; 4]>> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let pid = (c.state == ContainerState::Running)
        .then(|| eng.dirs.container_run(&c.id).live_pid())
        .flatten()
        .ok_or_else(|| Error::Conflict(format!("container {} is not running", c.name)))?;
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ctx(|| "read pid namespace".into())?;
    let mut rows = vec![];
    for e in std::fs::read_dir("/proc").ctx(|| "read /proc".into())?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let uid = std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(String::from))
            })
            .unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ticks: u64 = stat
            .rfind(')')
            .map(|i| &stat[i + 2..])
            .map(|r| r.split_whitespace().skip(11).take(2).filter_map(|x| x.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        let secs = ticks / 100;
        rows.push([p.to_string(), uid, format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60), cmd]);
    }
    rows.sort_by_key(|r| r[0].parse::<i32>().unwrap_or(0));
    Ok(rows)
}

/// Status text for `ps`, as Docker words it.
pub fn status_text(c: &ContainerRow, ago: impl Fn(&str) -> String) -> String {
    match c.state {
        ContainerState::Exited => {
            format!("Exited ({}) {}", c.exit_code.unwrap_or(0), c.finished_at.as_deref().map(&ago).unwrap_or_default())
        }
        ContainerState::Running => {
            format!("Up {}", c.started_at.as_deref().map(&ago).unwrap_or_default().trim_end_matches(" ago"))
        }
        ContainerState::Created => "Created".into(),
        s => s.to_string(),
    }
}

/// `cove attach`: streams the running container's output from now on and, when it has a
/// terminal, sends our input to it (raw mode); returns the container's exit code.
/// Signals (INT, TERM, ...) are forwarded to the container, as Docker's sig-proxy does.
pub fn attach(eng: &mut Engine, key: &str) -> Result<i64> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state != ContainerState::Running {
        return Err(Error::Conflict(format!("you cannot attach to a stopped container, start it first ({})", c.name)));
    }
    let rd = eng.dirs.container_run(&c.id);
    let sock = crate::with_short_path(&rd, "attach.sock", |p| std::os::unix::net::UnixStream::connect(p))
        .ctx(|| format!("attach to {}", c.name))?;
    let tty = c.request()?.tty;
    let pid = rd.live_pid();
    let sfd = crate::tty::block_signals()?;
    let stdin = cove_sys::borrow_raw(0);
    let stdout = cove_sys::borrow_raw(1);
    let _raw = (tty && cove_sys::is_tty(stdin)).then(|| crate::tty::RawMode::enter(stdin)).flatten();
    let mut stdin_open = tty;
    let mut buf = vec![0u8; 16 * 1024];
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Other(format!("poll: {e}"))),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            match nix::unistd::read(&sock, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = nix::unistd::write(stdout, &buf[..n]);
                }
            }
        }
        if ready[1] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                if matches!(sig, Signal::SIGCHLD | Signal::SIGWINCH) {
                    continue;
                }
                if let Some(p) = pid {
                    let _ = nix::sys::signal::kill(Pid::from_raw(p), sig);
                }
            }
        }
        if stdin_open && ready.get(2).copied().unwrap_or(false) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    use std::io::Write;
                    if (&sock).write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(_raw);
    wait(eng, &c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(d: &std::path::Path) -> Engine {
        let dirs = crate::Dirs {
            data: d.join("data"),
            run: d.join("run"),
            rootless: true,
            uid: 1000,
            gid: 1000,
            user_name: "u".into(),
        };
        std::fs::create_dir_all(dirs.containers()).unwrap();
        std::fs::create_dir_all(&dirs.run).unwrap();
        let db = crate::db::Db::open(&dirs.db_path()).unwrap();
        let store = cove_image::Store::open(&dirs.storage()).unwrap();
        Engine { dirs, db, store, driver: crate::storage::Driver::Copy }
    }

    #[test]
    fn a_corrupt_row_is_an_error_naming_it_and_rm_still_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let mut eng = engine(d.path());
        eng.db
            .raw()
            .execute("INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES ('abc123', 'web', 'i', 'img', 'now', '{\"rm\": tru', 'exited')", [])
            .unwrap();
        let c = eng.db.find_container("web").unwrap();
        let e = c.request().unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert!(e.to_string().starts_with("container web has a corrupt config: "), "{e}");
        // Not a default request: a verb that needs it says so.
        eng.db.set_container_state("abc123", ContainerState::Running, Some(1), None).unwrap();
        std::fs::create_dir_all(eng.dirs.container_run("abc123")).unwrap();
        std::fs::write(eng.dirs.container_run("abc123").join("exit"), "3 2024-01-01T00:00:00Z 0").unwrap();
        // The exit is recorded even though the row's request does not decode, and the row is kept.
        reconcile(&mut eng).unwrap();
        let c = eng.db.find_container("web").unwrap();
        assert_eq!((c.state, c.exit_code), (ContainerState::Exited, Some(3)));
        assert!(stop(&mut eng, "web", None).is_ok(), "stopping a stopped container succeeds without its request");
        // `rm` needs nothing from the request.
        assert_eq!(remove(&mut eng, "web", true).unwrap(), "abc123");
        assert!(matches!(eng.db.find_container("web"), Err(Error::NotFound(_))));
    }
}
