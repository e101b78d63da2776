//! Which storage driver assembles container root filesystems on this host (probed once per
//! kernel), and how layers are unpacked for it.

use crate::Dirs;
use std::path::Path;

/// How container root filesystems are assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Kernel overlayfs (inside the user namespace rootless: Linux >= 5.11).
    Overlay,
    /// fuse-overlayfs, where kernel overlayfs cannot be mounted (Linux < 5.11 rootless).
    FuseOverlay,
    /// A private copy of the image per container (slow, always works).
    Copy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::FuseOverlay => "fuse-overlayfs",
            Driver::Copy => "copy",
        }
    }
}

/// Probes once whether kernel overlayfs can be mounted here (in a throwaway mount namespace)
/// and caches the answer per kernel in the runtime dir. `COVE_STORAGE_DRIVER=copy|overlay`
/// forces a choice.
pub fn storage_driver(dirs: &Dirs) -> Driver {
    storage_driver_reason(dirs).0
}

pub fn storage_driver_reason(dirs: &Dirs) -> (Driver, String) {
    match std::env::var("COVE_STORAGE_DRIVER").as_deref() {
        Ok("copy") | Ok("vfs") => return (Driver::Copy, "chosen by COVE_STORAGE_DRIVER".into()),
        Ok("overlay") => return (Driver::Overlay, "chosen by COVE_STORAGE_DRIVER".into()),
        Ok("fuse-overlayfs") => return (Driver::FuseOverlay, "chosen by COVE_STORAGE_DRIVER".into()),
        _ => {}
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cache = dirs.run.join("storage-driver");
    if let Ok(t) = std::fs::read_to_string(&cache) {
        let mut lines = t.lines();
        if lines.next() == Some(kernel.as_str()) {
            let d = match lines.next() {
                Some("overlay") => Driver::Overlay,
                Some("fuse-overlayfs") => Driver::FuseOverlay,
                _ => Driver::Copy,
            };
            return (d, lines.next().unwrap_or("").to_string());
        }
    }
    let (d, why) = match probe_overlay(&dirs.run, dirs.rootless) {
        Ok(()) => (Driver::Overlay, format!("kernel overlayfs works here (Linux {kernel}{})", if dirs.rootless { ", in the user namespace with userxattr" } else { "" })),
        Err(e) => match (tool("fuse-overlayfs"), nix::unistd::access("/dev/fuse", nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK)) {
            (Some(_), Ok(())) => (Driver::FuseOverlay, format!("kernel overlayfs unavailable ({e}); using fuse-overlayfs")),
            (None, _) => (Driver::Copy, format!("kernel overlayfs unavailable ({e}) and fuse-overlayfs not installed (Debian package fuse-overlayfs); each container gets a copy of its image")),
            (Some(_), Err(_)) => (Driver::Copy, format!("kernel overlayfs unavailable ({e}) and /dev/fuse not accessible (chmod 0666 /dev/fuse, as udev would); each container gets a copy of its image")),
        },
    };
    let _ = std::fs::write(&cache, format!("{kernel}\n{}\n{why}\n", d.name()));
    (d, why)
}

fn probe_overlay(run: &Path, userxattr: bool) -> Result<(), String> {
    let base = run.join(format!("overlay-probe-{}", std::process::id()));
    let mk = |n: &str| std::fs::create_dir_all(base.join(n)).map_err(|e| format!("mkdir: {e}"));
    for n in ["lower", "upper", "work", "merged"] {
        mk(n)?;
    }
    let result = match cove_sys::fork() {
        Err(e) => Err(format!("fork: {e}")),
        Ok(None) => {
            use nix::mount::MsFlags;
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
                && nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .is_ok();
            let data = format!(
                "lowerdir={},upperdir={},workdir={}{}",
                base.join("lower").display(),
                base.join("upper").display(),
                base.join("work").display(),
                if userxattr { ",userxattr" } else { "" }
            );
            let code = match ok
                && nix::mount::mount(
                    Some("overlay"),
                    &base.join("merged"),
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data.as_str()),
                )
                .is_ok()
            {
                true => 0,
                false => 1,
            };
            cove_sys::exit_now(code);
        }
        Ok(Some(pid)) => match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(_) => Err("mount -t overlay was refused".into()),
            Err(e) => Err(format!("wait: {e}")),
        },
    };
    let _ = std::fs::remove_dir_all(&base);
    result
}

/// How layers are unpacked for this user's store.
pub fn unpack_options(dirs: &Dirs) -> cove_image::UnpackOptions {
    cove_image::UnpackOptions {
        whiteouts: cove_image::WhiteoutMode::Overlay { userxattr: dirs.rootless },
        ..Default::default()
    }
}

/// An installed tool's path ([`cove_sys::find_program`]), as text for `info` and messages.
pub(crate) fn tool(name: &str) -> Option<String> {
    cove_sys::find_program(name).map(|p| p.display().to_string())
}
