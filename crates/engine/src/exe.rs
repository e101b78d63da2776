//! Which cove binary runs, and from where: no process that enters or shares a container's
//! namespaces may run from the installed file (CVE-2019-5736 class).
//!
//! Every command that puts cove code where a container can see it first re-executes itself
//! from a sealed memfd copy of its binary ([`run_sealed`]): `exec` (the process it forks into
//! the container is cove code until its execve), and the creator of a container whose PID 1
//! stays cove's init (`--init`): foreground `run`, the monitor `cove __monitor`. Those
//! processes inherit the copy: from inside, their `/proc/PID/exe` is `/memfd:cove (deleted)`,
//! readable, never writable, not the installed file, whatever capabilities (CAP_SYS_PTRACE)
//! the container holds. Without `--init`, PID 1 is cove code only while it is alone in its new
//! pid namespace (no process of the container exists before its execve), and its creator lives
//! in the host's: nothing to copy there, so `run --rm` and `run -d` pay nothing.
//!
//! The installed path stays known (the pump `cove-monitor` sits next to it, helpers are
//! started from it): it travels in `COVE_INSTALLED_EXE`, set by the re-exec and believed only
//! by a process that runs from a sealed copy ([`installed`]). Helpers that never meet a
//! container (network helper, the pump) run from the installed file, so no long-lived process
//! holds a copy it does not need (each copy is the binary's size in memory).

use crate::{Error, IoContext, Result};
use std::ffi::{CString, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Where the re-exec leaves the installed binary's path for the sealed image.
const INSTALLED_VAR: &str = "COVE_INSTALLED_EXE";

fn self_exe() -> Result<std::fs::File> {
    std::fs::File::open("/proc/self/exe").ctx(|| "open /proc/self/exe".into())
}

/// True when this process runs from a sealed copy.
pub fn is_sealed() -> bool {
    self_exe().is_ok_and(|f| cove_sys::exeseal::is_sealed(f.as_fd()))
}

/// Re-executes this process (same argv, same environment plus the installed path) from a
/// sealed in-memory copy of its binary, unless it already runs from one (then returns at once).
/// Must run before the process has started anything: it starts over from `main`.
pub fn run_sealed() -> Result<()> {
    let exe = self_exe()?;
    if cove_sys::exeseal::is_sealed(exe.as_fd()) {
        return Ok(());
    }
    let path = std::fs::read_link("/proc/self/exe").ctx(|| "read /proc/self/exe".into())?;
    let copy = cove_sys::exeseal::sealed_copy(exe.as_fd(), c"cove")
        .map_err(|e| Error::Other(format!("sealed copy of {}: {e}", path.display())))?;
    drop(exe);
    let cstr = |v: OsString| {
        CString::new(v.into_vec())
            .map_err(|_| Error::Invalid("argument or environment variable with a NUL byte".into()))
    };
    let argv = std::env::args_os().map(cstr).collect::<Result<Vec<_>>>()?;
    let mut envp = vec![];
    for (k, v) in std::env::vars_os().filter(|(k, _)| k != INSTALLED_VAR) {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        envp.push(cstr(kv)?);
    }
    let mut kv = OsString::from(format!("{INSTALLED_VAR}="));
    kv.push(&path);
    envp.push(cstr(kv)?);
    let e = cove_sys::exeseal::exec_fd(copy.as_fd(), &argv, &envp);
    Err(Error::Other(format!("run from a sealed copy of {}: {e}", path.display())))
}

/// The installed cove binary: our own file, or, when we run from a sealed copy, the path the
/// re-exec left (checked: absolute, a regular file of the copy's size).
pub fn installed() -> Result<PathBuf> {
    let exe = self_exe()?;
    if !cove_sys::exeseal::is_sealed(exe.as_fd()) {
        return std::fs::read_link("/proc/self/exe").ctx(|| "read /proc/self/exe".into());
    }
    let bad = |why: &str| Error::NotFound(format!("cannot find the installed cove binary: {why}"));
    let path =
        PathBuf::from(std::env::var_os(INSTALLED_VAR).ok_or_else(|| bad(&format!("{INSTALLED_VAR} is not set")))?);
    let meta = std::fs::metadata(&path).map_err(|e| bad(&format!("{}: {e}", path.display())))?;
    let ours = exe.metadata().ctx(|| "stat /proc/self/exe".into())?;
    if !path.is_absolute() || !meta.is_file() || meta.len() != ours.len() {
        return Err(bad(&format!("{} is not the binary this process was copied from", path.display())));
    }
    Ok(path)
}
