//! Finding and executing the container's command, with Docker's exit codes
//! (127: not found, 126: cannot be invoked).

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a command could not be started, with the exit code Docker uses for it.
#[derive(Debug, PartialEq, Eq)]
pub struct ExecFailure {
    pub code: i32,
    pub message: String,
}

fn env_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Resolves `arg0` against the container's `PATH` (from its environment, as Docker does).
pub fn lookup(arg0: &str, env: &[String]) -> Result<PathBuf, ExecFailure> {
    if arg0.is_empty() {
        return Err(ExecFailure { code: 127, message: "exec: \"\": executable file not found in $PATH".into() });
    }
    if arg0.contains('/') {
        return check(Path::new(arg0), arg0);
    }
    let mut denied = None;
    for dir in env_path(env).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(arg0);
        match check(&p, arg0) {
            Ok(p) => return Ok(p),
            Err(e) if e.code == 126 => denied = Some(e),
            Err(_) => {}
        }
    }
    Err(denied
        .unwrap_or(ExecFailure { code: 127, message: format!("exec: {arg0:?}: executable file not found in $PATH") }))
}

fn check(p: &Path, arg0: &str) -> Result<PathBuf, ExecFailure> {
    match std::fs::metadata(p) {
        Err(_) => Err(ExecFailure {
            code: 127,
            message: format!("exec: {arg0:?}: stat {}: no such file or directory", p.display()),
        }),
        Ok(m) if m.is_dir() => Err(ExecFailure { code: 126, message: format!("exec: {arg0:?}: is a directory") }),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(ExecFailure { code: 126, message: format!("exec: {arg0:?}: permission denied") })
        }
        Ok(_) => Ok(p.to_path_buf()),
    }
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, ExecFailure> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| ExecFailure {
                code: 126,
                message: format!("argument or variable contains a NUL byte: {s:?}"),
            })
        })
        .collect()
}

/// `execve`s the command; returns only on failure.
pub fn exec(args: &[String], env: &[String]) -> ExecFailure {
    let Some(arg0) = args.first() else {
        return ExecFailure { code: 125, message: "no command specified".into() };
    };
    let path = match lookup(arg0, env) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (argv, envp) = match (cstrings(args), cstrings(env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let Ok(cpath) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return ExecFailure { code: 126, message: "path contains a NUL byte".into() };
    };
    let err = match nix::unistd::execve(&cpath, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == nix::errno::Errno::ENOENT { 127 } else { 126 };
    ExecFailure { code, message: format!("exec {}: {}", path.display(), err.desc().to_lowercase()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_codes() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(lookup("sh", &env).is_ok());
        assert_eq!(lookup("definitely-not-here", &env).unwrap_err().code, 127);
        assert_eq!(lookup("/etc", &env).unwrap_err().code, 126);
        assert_eq!(lookup("/etc/hostname", &env).map_err(|e| e.code).err().unwrap_or(126), 126);
        assert_eq!(lookup("", &env).unwrap_err().code, 127);
    }
}
