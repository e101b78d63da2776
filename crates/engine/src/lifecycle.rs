//! Docker's lifecycle verbs without a daemon: detached run, create/start, stop/kill, wait,
//! rm, logs, exec, top, restart, prune — and folding what monitors left in the runtime dir
//! into the state database ([`reconcile`]).

use crate::db::ContainerRow;
use crate::monitor::{live_pid, MonitorConfig, Restart};
use crate::run::{prepare, remove_container_files, Engine};
use crate::spec::RunRequest;
use crate::{Error, IoContext, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rusqlite::params;
use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Invalid(format!("invalid signal: {s}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<Signal>().map_err(|_| Error::Invalid(format!("invalid signal: {s}")))
}

fn request(c: &ContainerRow) -> RunRequest {
    serde_json::from_str(&c.config).unwrap_or_default()
}

/// Brings the rows of containers that were running up to date with their monitors' files:
/// an exit status left by a monitor becomes `exited`; a container whose monitor (or
/// foreground CLI) died without leaving one becomes `exited` with code 255 and an error note.
///
/// A container run with `--rm` (detached) is removed here once it has exited, as Docker's
/// daemon removes it: the first cove command after the exit (ps, stop, wait, ...) finds it gone.
pub fn reconcile(eng: &mut Engine) -> Result<()> {
    reconcile_collect(eng).map(|_| ())
}

/// [`reconcile`], returning the (id, exit code) of the `--rm` containers it removed.
fn reconcile_collect(eng: &mut Engine) -> Result<Vec<(String, i64)>> {
    // A `created` row with a monitor pid file is one whose start was under way (a foreground
    // CLI or a `start` killed before it recorded the outcome): its files say what became of it.
    let rows: Vec<ContainerRow> = eng
        .db
        .containers()?
        .into_iter()
        .filter(|c| c.state == "running" || c.state == "restarting" || c.state == "created" && eng.dirs.container_run(&c.id).join("monitor.pid").exists())
        .collect();
    let mut ended = vec![];
    for c in rows {
        let rd = eng.dirs.container_run(&c.id);
        let read_exit = || std::fs::read_to_string(rd.join("exit")).ok();
        let exit = match read_exit() {
            Some(t) => Some(t),
            None if let Some(pid) = live_pid(&rd.join("pid")) => {
                // Running; after a restart by the monitor its PID 1 is a new process.
                if Some(pid as i64) != c.pid || c.state == "created" {
                    eng.db.write(|tx| {
                        tx.execute("UPDATE containers SET state = CASE state WHEN 'created' THEN 'running' ELSE state END, pid = ?2, started_at = ?3 WHERE id = ?1", params![c.id, pid, crate::db::now_rfc3339()])?;
                        Ok(())
                    })?;
                }
                continue;
            }
            None if live_pid(&rd.join("monitor.pid")).is_some() => continue, // between restarts
            // The monitor may have written its exit file and left between our checks: look
            // once more before concluding that it died without one.
            None => read_exit(),
        };
        if let Some(t) = exit {
            let mut it = t.split_whitespace();
            let code: i64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(255);
            let finished = it.next().map(String::from).unwrap_or_else(crate::db::now_rfc3339);
            eng.db.write(|tx| {
                tx.execute("UPDATE containers SET state = 'exited', pid = NULL, exit_code = ?2, finished_at = ?3 WHERE id = ?1 AND state IN ('running','restarting','created')", params![c.id, code, finished])?;
                Ok(())
            })?;
            ended.push((c, code));
            continue;
        }
        // Nothing left to ask: the monitor (or foreground CLI) died without an exit status.
        // Never write into the run dir here: a concurrent `rm` may be deleting it.
        eng.db.write(|tx| {
            tx.execute("UPDATE containers SET state = 'exited', pid = NULL, exit_code = 255, finished_at = ?2 WHERE id = ?1 AND state IN ('running','restarting','created')", params![c.id, crate::db::now_rfc3339()])?;
            Ok(())
        })?;
        ended.push((c, 255));
    }
    let mut removed = vec![];
    for (c, code) in ended {
        let req = request(&c);
        if !req.publish.is_empty() || req.publish_all {
            // Its monitor (or foreground CLI) is gone without releasing them: the helper
            // would otherwise keep serving ports for a container that no longer runs.
            crate::ports::unregister(&eng.dirs.run, &c.id);
        }
        if req.rm && remove_exited(eng, &c).is_ok() {
            removed.push((c.id, code));
        }
    }
    // A `--rm` container seen exited while its monitor was still finishing (the exit file is
    // written before the monitor's cleanup) is removed by a later pass, once the monitor is gone.
    // (The text test spares a JSON decode per exited container on every command.)
    let leftovers: Vec<ContainerRow> = eng.db.containers()?.into_iter().filter(|c| c.state == "exited" && !removed.iter().any(|(id, _)| *id == c.id) && c.config.contains("\"rm\":true") && request(c).rm).collect();
    for c in leftovers {
        let code = c.exit_code.unwrap_or(0);
        if remove_exited(eng, &c).is_ok() {
            removed.push((c.id, code));
        }
    }
    Ok(removed)
}

/// Removes a container whose monitor is gone (its row says exited): leases, row, files.
fn remove_exited(eng: &mut Engine, c: &ContainerRow) -> Result<()> {
    let rd = eng.dirs.container_run(&c.id);
    // The monitor writes the exit file, then cleans up (cgroup, ports) and goes: give it that.
    let t0 = Instant::now();
    while live_pid(&rd.join("monitor.pid")).is_some() {
        if t0.elapsed() > Duration::from_millis(500) {
            return Err(Error::Conflict(format!("container {} is still being monitored", c.name)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    delete(eng, c, true)
}

/// Releases what a container that no longer runs holds and deletes it: published ports,
/// leases, row, run dir, files. `if_exited`: only while its row says exited (a `start` that
/// came in between wins, and keeps its files).
fn delete(eng: &mut Engine, c: &ContainerRow, if_exited: bool) -> Result<()> {
    crate::ports::unregister(&eng.dirs.run, &c.id);
    let deleted = eng.db.write(|tx| {
        let n = tx.execute("DELETE FROM containers WHERE id = ?1 AND (?2 = 0 OR state = 'exited')", params![c.id, if_exited])?;
        if n > 0 {
            crate::network::release(tx, &c.id)?;
        }
        Ok(n > 0)
    })?;
    if !deleted {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(eng.dirs.container_run(&c.id));
    remove_container_files(&eng.dirs.container(&c.id))
}

/// The monitor's configuration, written next to config.json.
pub(crate) fn write_monitor_config(eng: &Engine, req: &RunRequest, p: &crate::run::Prepared) -> Result<()> {
    let id = &p.id;
    let lo = crate::logs::LogOpts::parse(&req.log_opts)?;
    let cfg = MonitorConfig {
        id: id.to_string(),
        rootfs: p.rootfs.clone(),
        rootless: eng.dirs.rootless,
        tty: req.tty,
        restart: req.restart.as_deref().map(Restart::parse).transpose()?.unwrap_or_default(),
        log: (lo.max_size, lo.max_file),
        log_path: eng.dirs.container(id).join("container.log"),
        userns: p.userns.clone(),
        run: Some(eng.dirs.run.clone()),
        seccomp_dir: Some(eng.dirs.seccomp_cache()),
        endpoints: p.endpoints.clone(),
        publish: if p.ports { req.publish.clone() } else { vec![] },
        publish_all: p.ports && req.publish_all,
        exposed: p.exposed.clone(),
        db: Some(eng.dirs.db_path()),
        net_from: p.net_from.clone(),
        config: crate::config::path(eng.dirs.rootless),
    };
    let json = serde_json::to_vec(&cfg).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(eng.dirs.container(id).join("monitor.json"), json).ctx(|| "write monitor.json".into())
}

/// `cove create`: the container exists, nothing runs.
pub fn create(eng: &mut Engine, req: &RunRequest) -> Result<String> {
    let p = prepare(eng, req)?;
    if let Err(e) = write_monitor_config(eng, req, &p) {
        let _ = remove(eng, &p.id, true);
        return Err(e);
    }
    Ok(p.id)
}

/// Starts the monitor for a created or exited container and waits until the container's
/// command was exec'd (or failed). Returns PID 1's pid.
pub fn start(eng: &mut Engine, key: &str) -> Result<i32> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state == "running" {
        return Ok(c.pid.unwrap_or(0) as i32);
    }
    let dir = eng.dirs.container(&c.id);
    let rd = eng.dirs.container_run(&c.id);
    let _ = std::fs::remove_dir_all(&rd);
    std::fs::create_dir_all(&rd).ctx(|| format!("create {}", rd.display()))?;
    let msg = crate::spawn_helper("cove-monitor", "__monitor", &[dir.display().to_string(), rd.display().to_string()])?;
    if let Some(pid) = msg.strip_prefix("OK ").and_then(|p| p.trim().parse::<i32>().ok()) {
        eng.db.set_container_state(&c.id, "running", Some(pid as i64), None)?;
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
    while live_pid(&rd.join("monitor.pid")).is_some() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if live_pid(&rd.join("monitor.pid")).is_none() {
        let _ = std::fs::remove_dir_all(&rd);
    }
    let state = if c.state == "created" { "created" } else { "exited" };
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
    Ok(eng.db.container(id)?.is_some_and(|c| c.state == "running"))
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
    let pid = (c.state == "running").then(|| live_pid(&rd.join("pid"))).flatten();
    let Some(pid) = pid else {
        // Between two runs of a restart policy (PID 1 gone, its monitor waiting to start it
        // again): marking it stopped ends it, as Docker's stop does.
        if c.state == "running" && live_pid(&rd.join("monitor.pid")).is_some() {
            let _ = std::fs::write(rd.join("stopped"), "");
            return Ok(c.id);
        }
        return Err(Error::Conflict(format!("container {} is not running", c.name)));
    };
    let _ = std::fs::write(rd.join("stopped"), "");
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(|e| Error::Other(format!("kill {}: {e}", c.name)))?;
    Ok(c.id)
}

/// `cove stop`: StopSignal (default SIGTERM), wait `timeout`, then SIGKILL.
pub fn stop(eng: &mut Engine, key: &str, timeout: Option<i64>) -> Result<()> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state != "running" {
        return Ok(()); // Docker: stopping a stopped container succeeds
    }
    let req = request(&c);
    let sig = req.stop_signal.as_deref().map(parse_signal).transpose()?.unwrap_or(Signal::SIGTERM);
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
        if !eng.db.container(&c.id)?.is_some_and(|c| c.state == "running" || c.state == "restarting") {
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
    let running = c.state == "running" || live_pid(&rd.join("monitor.pid")).is_some();
    if running {
        if !force {
            return Err(Error::Conflict(format!(
                "cannot remove container {:?}: container is running: stop the container before removing or force remove",
                c.name
            )));
        }
        let _ = std::fs::write(rd.join("stopped"), "");
        if let Some(pid) = live_pid(&rd.join("pid")) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // The monitor follows its container (and SIGKILL of the monitor takes the container
        // down through the parent-death signal).
        let t0 = Instant::now();
        while live_pid(&rd.join("monitor.pid")).is_some() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(m) = live_pid(&rd.join("monitor.pid")) {
            let _ = nix::sys::signal::kill(Pid::from_raw(m), Signal::SIGKILL);
        }
        if let Some(pid) = live_pid(&rd.join("pid")) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    delete(eng, &c, false)?;
    Ok(c.id)
}

/// `cove container prune`: removes every container that is not running.
pub fn prune(eng: &mut Engine) -> Result<Vec<String>> {
    reconcile(eng)?;
    let mut out = vec![];
    for c in eng.db.containers()? {
        if c.state != "running" && live_pid(&eng.dirs.container_run(&c.id).join("monitor.pid")).is_none() {
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
pub fn logs(eng: &mut Engine, key: &str, o: &LogsOptions, out: &mut dyn std::io::Write, err: &mut dyn std::io::Write) -> Result<()> {
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
    let pid = (c.state == "running").then(|| live_pid(&rd.join("pid"))).flatten().ok_or_else(|| Error::Conflict(format!("container {} is not running", c.name)))?;
    if o.args.is_empty() {
        return Err(Error::Invalid("no command specified".into()));
    }
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(&std::fs::read(eng.dirs.container(&c.id).join("config.json")).ctx(|| "read config.json".into())?)
        .map_err(|e| Error::Other(format!("config.json: {e}")))?;
    let mut process = spec.process().clone().ok_or_else(|| Error::Other("config.json has no process".into()))?;
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
        let img = eng.db.image(&c.image_id)?.ok_or_else(|| Error::NotFound(format!("image of container {} is gone", c.name)))?;
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
                    std::fs::OpenOptions::new().append(true).open(dir.join("passwd")).and_then(|mut f| f.write_all(line.as_bytes())).ctx(|| "update the container's passwd".into())?;
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
    let j = cove_runtime::join::spawn_in(Pid::from_raw(pid), &process, seccomp.as_ref(), stdio, Some(&eng.dirs.seccomp_cache()))?;
    crate::tty::wait_foreground(j.pid, sfd, pipes.or(j.pty_master.map(crate::tty::Relay::Pty)), o.interactive, None)
}

/// `cove top`: the container's processes (pid as seen on the host, user, time, command).
pub fn top(eng: &mut Engine, key: &str) -> Result<Vec<[String; 4]>> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    let pid = (c.state == "running").then(|| live_pid(&eng.dirs.container_run(&c.id).join("pid"))).flatten().ok_or_else(|| Error::Conflict(format!("container {} is not running", c.name)))?;
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ctx(|| "read pid namespace".into())?;
    let mut rows = vec![];
    for e in std::fs::read_dir("/proc").ctx(|| "read /proc".into())?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let uid = std::fs::read_to_string(format!("/proc/{p}/status")).ok().and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(String::from))).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ticks: u64 = stat.rfind(')').map(|i| &stat[i + 2..]).map(|r| r.split_whitespace().skip(11).take(2).filter_map(|x| x.parse::<u64>().ok()).sum()).unwrap_or(0);
        let secs = ticks / 100;
        rows.push([p.to_string(), uid, format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60), cmd]);
    }
    rows.sort_by_key(|r| r[0].parse::<i32>().unwrap_or(0));
    Ok(rows)
}

/// Status text for `ps`, as Docker words it.
pub fn status_text(c: &ContainerRow, ago: impl Fn(&str) -> String) -> String {
    match c.state.as_str() {
        "exited" => format!("Exited ({}) {}", c.exit_code.unwrap_or(0), c.finished_at.as_deref().map(&ago).unwrap_or_default()),
        "running" => format!("Up {}", c.started_at.as_deref().map(&ago).unwrap_or_default().trim_end_matches(" ago")),
        "created" => "Created".into(),
        s => s.to_string(),
    }
}

/// `cove attach`: streams the running container's output from now on and, when it has a
/// terminal, sends our input to it (raw mode); returns the container's exit code.
/// Signals (INT, TERM, ...) are forwarded to the container, as Docker's sig-proxy does.
pub fn attach(eng: &mut Engine, key: &str) -> Result<i64> {
    reconcile(eng)?;
    let c = eng.db.find_container(key)?;
    if c.state != "running" {
        return Err(Error::Conflict(format!("you cannot attach to a stopped container, start it first ({})", c.name)));
    }
    let rd = eng.dirs.container_run(&c.id);
    let sock = crate::with_short_path(&rd, "attach.sock", |p| std::os::unix::net::UnixStream::connect(p)).ctx(|| format!("attach to {}", c.name))?;
    let tty = request(&c).tty;
    let pid = live_pid(&rd.join("pid"));
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
