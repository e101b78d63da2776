//! What this host gives cove, and why: storage driver, id mapping, cgroups, tools.

use crate::Dirs;
use serde_json::json;

use crate::storage::tool;
pub use crate::storage::{storage_driver, storage_driver_reason, unpack_options, Driver};

fn dev_access(path: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(_) => "missing".into(),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if nix::unistd::access(path, nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK).is_ok() {
                format!("usable (mode {mode:o})")
            } else {
                format!("not accessible (mode {mode:o}; without udev it stays 0600: as root, chmod 0666 {path})")
            }
        }
    }
}

/// `cove info` as JSON.
pub fn report(dirs: &Dirs, mapping: Option<&cove_runtime::userns::IdMapping>) -> serde_json::Value {
    let (driver, why) = storage_driver_reason(dirs);
    let cg = cove_cgroups::detect(dirs.rootless);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let keeper =
        cove_runtime::userns::live_keeper(&cove_runtime::userns::KeeperPaths::new(&dirs.run)).map(|p| p.as_raw());
    json!({
        "Rootless": dirs.rootless,
        "User": { "Name": dirs.user_name, "Uid": dirs.uid, "Gid": dirs.gid },
        "IdMapping": mapping.map(|m| json!({
            "UidMap": m.uids, "GidMap": m.gids,
            "Kind": if m.is_single() { "single id" } else { "subordinate range (newuidmap/newgidmap)" },
            "Why": m.single_reason,
        })),
        "KeeperPid": keeper,
        "Kernel": kernel,
        "Storage": { "Driver": driver.name(), "Why": why, "Root": dirs.storage() },
        "Cgroups": {
            "Hierarchy": format!("{:?}", cg.hierarchy),
            "Usable": cg.usable,
            "Controllers": cg.controllers,
            "Why": cg.reason,
        },
        "Seccomp": "libseccomp, Docker's default profile",
        "Network": {
            "Outbound": match crate::outbound::choose() {
                Ok(Some(crate::outbound::Tool::Pasta(p))) => format!("pasta ({}); TCP through the network helper", p.display()),
                Ok(Some(crate::outbound::Tool::Slirp4netns(p))) => format!("slirp4netns ({}); TCP through the network helper", p.display()),
                Ok(None) => "none (COVE_NETWORK_CMD=none): TCP through the network helper only".to_string(),
                Err(e) => e,
            },
            "HelperRunning": crate::netd::running(&dirs.run),
        },
        "DataRoot": dirs.data,
        "RunRoot": dirs.run,
        "Tools": {
            "newuidmap": tool("newuidmap"), "newgidmap": tool("newgidmap"),
            "pasta": tool("pasta"), "slirp4netns": tool("slirp4netns"), "fuse-overlayfs": tool("fuse-overlayfs"),
        },
        "Devices": { "/dev/fuse": dev_access("/dev/fuse"), "/dev/net/tun": dev_access("/dev/net/tun") },
    })
}
