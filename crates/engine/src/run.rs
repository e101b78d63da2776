//! `cove run` (foreground): create the container record and files, build the spec, hand it to
//! the runtime, relay I/O until PID 1 exits, record the exit, clean up with `--rm`.

use crate::db::ContainerState;
use crate::spec::RunRequest;
use crate::{IoContext, Result};
use cove_runtime::CreateOptions;
use std::os::fd::AsFd;

pub use crate::state::Engine;

pub use crate::container::{prepare, Prepared};
pub use crate::reconcile::remove_container_files;

/// `cove run` in the foreground. Returns the container's exit code.
pub fn run(eng: &mut Engine, req: &RunRequest) -> Result<i32> {
    let p = prepare(eng, req)?;
    tracing::debug!("prepared");
    if !req.rm {
        // A kept foreground container can be started again (detached, by the monitor), as
        // Docker's can: it needs what `create` writes.
        if let Err(e) = crate::container::write_monitor_config(eng, req, &p) {
            let _ = crate::reconcile::delete(eng, &p.id, false);
            return Err(e);
        }
    }
    let result = run_prepared(eng, &p, req);
    tracing::debug!("container exited");
    cove_sys::fault::point("run.before-cleanup");
    let code = match &result {
        Ok(c) => Some(*c as i64),
        Err(e) => Some(e.exit_code() as i64),
    };
    let _ = std::fs::remove_dir_all(eng.dirs.container_run(&p.id));
    if req.rm {
        let _ = remove_container_files(&p.dir);
        let _ = eng.db.delete_container(&p.id, false);
    } else {
        // A container whose setup failed never ran: it stays Created, as Docker leaves it.
        let state = if result.is_ok() { ContainerState::Exited } else { ContainerState::Created };
        let _ = eng.db.set_container_state(&p.id, state, None, code);
    }
    tracing::debug!("cleaned up");
    result
}

fn run_prepared(eng: &mut Engine, p: &Prepared, req: &RunRequest) -> Result<i32> {
    // Never cove's own descriptors: pipes without -t, a pty of the container's with it.
    let (stdio, pipes) = crate::tty::Relay::new(req.tty, req.interactive)?;
    // This CLI is the container's monitor: if it is killed at any point from here on, the
    // next command sees the pid file of a dead monitor and settles the container (exited, its
    // ports released, removed with --rm) instead of leaving it `created` forever.
    let rd = eng.dirs.container_run(&p.id);
    std::fs::create_dir_all(&rd).ctx(|| format!("create {}", rd.display()))?;
    crate::monitor::write_pid_file(&rd.monitor_pid_file(), std::process::id() as i32)?;
    p.creating.done();
    cove_sys::fault::point("run.after-monitor-pid");
    let cg = crate::limits::cgroup_for_limits(&p.id, &p.spec, eng.dirs.rootless);
    let run_dir = eng.dirs.run.clone();
    let config = crate::config::path(eng.dirs.rootless);
    let db_path = eng.dirs.db_path();
    let container_run = eng.dirs.container_run(&p.id);
    let specs = &p.plan.ports;
    let hook_error = crate::HookError::default();
    let add = |pid: nix::unistd::Pid| -> std::result::Result<(), String> {
        if let Some(cg) = &cg {
            cg.add_pid(pid.as_raw()).map_err(|e| format!("join cgroup: {e}"))?;
        }
        crate::network::attach(&run_dir, &db_path, pid.as_raw(), &p.endpoints, config.as_deref())?;
        crate::ports::publish(
            &run_dir,
            &container_run,
            &p.id,
            specs,
            p.endpoints.first().map(crate::network::Endpoint::port_target),
        )
        .map_err(|e| hook_error.keep(e))
    };
    let created = cove_runtime::create(CreateOptions {
        spec: &p.spec,
        rootfs: p.rootfs.clone(),
        rootless: eng.dirs.rootless,
        stdio,
        on_pid: Some(&add),
        userns: p.userns.clone(),
        seccomp_cache: Some(eng.dirs.seccomp_cache()),
    });
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(cg) = &cg {
                let _ = cg.remove();
            }
            return Err(hook_error.or(e));
        }
    };
    let pid = created.pid;
    tracing::debug!("created");
    cove_sys::fault::point("run.after-create");
    let master =
        created.pty_master.as_ref().map(|m| m.as_fd().try_clone_to_owned()).transpose().ctx(|| "dup pty".into())?;
    let relay = pipes.or(master.map(crate::tty::Relay::Pty));
    eng.db.set_container_state(&p.id, ContainerState::Running, Some(pid.as_raw() as i64), None)?;
    // So other cove commands can tell whether this foreground container still runs.
    let _ = crate::monitor::write_pid_file(&rd.pid_file(), pid.as_raw());
    cove_sys::fault::point("run.after-state");
    let sfd = crate::tty::block_signals()?;
    let started = created.start();
    tracing::debug!("started");
    let code = match started {
        Ok(_) => {
            // What a kept container prints goes to its log too (`cove logs`, as Docker's).
            let lo = Some(p.plan.log).filter(|_| !req.rm);
            let log = lo.and_then(|lo| {
                match cove_monitor::LogWriter::open(
                    &eng.dirs.container(&p.id).join("container.log"),
                    lo.max_size,
                    lo.max_file,
                ) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!("container log: {e}");
                        None
                    }
                }
            });
            // This CLI is the container's monitor: it replaces a network helper that ends.
            let watch = (!p.endpoints.is_empty())
                .then(|| crate::network::HelperWatch::new(&run_dir, &db_path, config.as_deref()));
            crate::tty::wait_foreground(pid, sfd, relay, req.interactive, log, watch)
        }
        Err(e) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(e.into())
        }
    };
    if !specs.is_empty() {
        crate::ports::unregister(&run_dir, &p.id);
    }
    if let Some(cg) = &cg {
        if let Err(e) = cg.remove() {
            tracing::debug!("remove cgroup: {e}");
        }
    }
    code
}
