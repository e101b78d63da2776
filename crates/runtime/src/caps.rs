//! Identity and privileges of the container process: user, groups, capabilities, rlimits.

use crate::{Context, Error, Result};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, User};
use std::str::FromStr;

/// Docker's default capability set (one list for the whole project, kept with the seccomp
/// profile whose capability-conditional rules depend on it).
pub use cove_seccomp::DOCKER_DEFAULT_CAPS;

/// Every capability this kernel knows that we may hand on (for `--privileged` and `--cap-add
/// ALL`): those outside our own bounding set can never be gained (capset fails with EPERM),
/// so they are left out, as Docker does.
pub fn all_caps() -> Vec<String> {
    let bounding = caps::read(None, CapSet::Bounding).ok();
    caps::runtime::thread_all_supported()
        .iter()
        .filter(|c| bounding.as_ref().is_none_or(|b| b.contains(c)))
        .map(|c| c.to_string())
        .collect()
}

/// Normalizes `sys_admin`, `SYS_ADMIN`, `CAP_SYS_ADMIN` to `CAP_SYS_ADMIN`; validates it.
pub fn normalize_cap(name: &str) -> Result<String> {
    let up = name.trim().to_ascii_uppercase();
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    Capability::from_str(&full).map_err(|_| Error::Spec(format!("unknown capability {name:?}")))?;
    Ok(full)
}

fn to_set(caps: &Option<oci_spec::runtime::Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in caps.iter().flatten() {
        if let Ok(serde_json::Value::String(s)) = serde_json::to_value(c) {
            if let Ok(cap) = Capability::from_str(&s) {
                out.insert(cap);
            }
        }
    }
    out
}

/// Drops the bounding set to the spec's (needs CAP_SETPCAP, so before changing uid).
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<()> {
    let keep = to_set(c.bounding());
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| Error::Spec(format!("drop {cap} from bounding set: {e}")))?;
        }
    }
    Ok(())
}

/// Switches to the spec's user and groups, keeping capabilities across the switch.
pub fn set_user(user: &User) -> Result<()> {
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    nix::sys::prctl::set_keepcaps(true).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let groups: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true);
    if setgroups_allowed {
        nix::unistd::setgroups(&groups).ctx(|| format!("setgroups {:?}", user.additional_gids()))?;
    } else if !groups.is_empty() {
        tracing::debug!("setgroups denied in this user namespace; additional groups ignored");
    }
    let unmapped = |what: &'static str, id: u32| {
        move |e: nix::Error| {
            match e {
            nix::errno::Errno::EINVAL => Error::UserNs(format!(
                "{what} {id} is not mapped in the user namespace (the id map has {} ids; add a range for your user in /etc/subuid and /etc/subgid)",
                crate::userns::current_uid_map().iter().map(|r| r.size as u64).sum::<u64>()
            )),
            e => Error::Sys { what: format!("set{what} {id}"), source: e },
        }
        }
    };
    nix::unistd::setresgid(gid, gid, gid).map_err(unmapped("gid", gid.as_raw()))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(unmapped("uid", uid.as_raw()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    Ok(())
}

/// Sets effective, permitted, inheritable and ambient sets from the spec.
pub fn apply_sets(c: &LinuxCapabilities) -> Result<()> {
    let e = to_set(c.effective());
    let p = to_set(c.permitted());
    let i = to_set(c.inheritable());
    let a = to_set(c.ambient());
    let err = |what: &str, e: caps::errors::CapsError| Error::Spec(format!("set {what} capabilities: {e}"));
    // Order matters: effective must stay a subset of permitted at every step, so shrink
    // effective first, then permitted; inheritable and ambient last.
    caps::set(None, CapSet::Effective, &e).map_err(|x| err("effective", x))?;
    caps::set(None, CapSet::Permitted, &p.union(&e).cloned().collect()).map_err(|x| err("permitted", x))?;
    caps::set(None, CapSet::Inheritable, &i).map_err(|x| err("inheritable", x))?;
    if !a.is_empty() {
        caps::set(None, CapSet::Ambient, &a).map_err(|x| err("ambient", x))?;
    }
    Ok(())
}

/// Applies rlimits. Raising a hard limit above the current one needs CAP_SYS_RESOURCE in the
/// initial namespace; rootless, it is clamped to the hard limit we have, with a note.
pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    for l in limits {
        let name = serde_json::to_value(l.typ()).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let res = match name.as_str() {
            "RLIMIT_CPU" => Resource::RLIMIT_CPU,
            "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
            "RLIMIT_DATA" => Resource::RLIMIT_DATA,
            "RLIMIT_STACK" => Resource::RLIMIT_STACK,
            "RLIMIT_CORE" => Resource::RLIMIT_CORE,
            "RLIMIT_RSS" => Resource::RLIMIT_RSS,
            "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
            "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
            "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
            "RLIMIT_AS" => Resource::RLIMIT_AS,
            "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
            "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
            "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => Resource::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
            other => return Err(Error::Spec(format!("unknown rlimit {other:?}"))),
        };
        if setrlimit(res, l.soft(), l.hard()).is_err() {
            let (_, hard_now) = getrlimit(res).ctx(|| format!("getrlimit {name}"))?;
            let hard = l.hard().min(hard_now);
            let soft = l.soft().min(hard);
            tracing::warn!("{name}: cannot raise hard limit to {} (have {hard_now}); using {soft}:{hard}", l.hard());
            setrlimit(res, soft, hard).ctx(|| format!("setrlimit {name}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names() {
        assert_eq!(normalize_cap("sys_admin").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(normalize_cap("CAP_NET_RAW").unwrap(), "CAP_NET_RAW");
        assert!(normalize_cap("nope").is_err());
        for c in DOCKER_DEFAULT_CAPS {
            assert!(normalize_cap(c).is_ok(), "{c}");
        }
    }
}
