//! Profile files: Docker's format (a superset of the OCI one) and how it is resolved against
//! the container's capabilities, the host architecture and the host kernel.
//!
//! Docker's profile is `specs.LinuxSeccomp` plus `archMap` and, per syscall entry, the
//! deprecated `name`, a `comment`, and `includes`/`excludes` filters. A plain OCI
//! `LinuxSeccomp` document is therefore a Docker profile without those extras, and one parser
//! reads both. Resolution follows moby's `profiles/seccomp.setupSeccomp`:
//!
//! - `architectures` and `archMap` are mutually exclusive; from `archMap` only the entry for
//!   the native architecture is kept, expanded to itself plus its sub-architectures;
//! - an entry is dropped when the host architecture is in `excludes.arches`, or
//!   `includes.arches` is non-empty and does not name it (Go names: `amd64`, `arm64`, `x32`...);
//! - an entry is dropped when the host kernel is older than `includes.minKernel`;
//! - an entry is dropped when *any* of `excludes.caps` is held, or when *not all* of
//!   `includes.caps` are held.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

use crate::{Error, Result};

/// A profile as written on disk (Docker or OCI format).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    #[serde(default)]
    pub listener_path: Option<PathBuf>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Option<Vec<Syscall>>,
}

/// One `archMap` entry: a native architecture and the ones it can also run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One `syscalls[]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Syscall {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Deprecated single-name form (Docker < 1.13 profiles).
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// One argument comparison.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Arg {
    pub index: usize,
    pub value: u64,
    #[serde(default)]
    pub value_two: Option<u64>,
    pub op: String,
}

/// `includes` / `excludes` of a syscall entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    /// `"4.8"`: only for `includes`.
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What resolution needs to know about the machine the container runs on.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Names the host architecture goes by in `includes.arches` (Go's `GOARCH` first).
    pub arch_names: &'static [&'static str],
    /// The `SCMP_ARCH_*` name of the native architecture, matched against `archMap`.
    pub scmp_arch: &'static str,
    /// Kernel `(major, minor)`, `None` if unknown (then `minKernel` entries are dropped).
    pub kernel: Option<(u32, u32)>,
}

impl Host {
    /// The machine this process runs on.
    pub fn current() -> Self {
        let (arch_names, scmp_arch) = arch_names(std::env::consts::ARCH);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| parse_kernel_version(release.trim()));
        Self { arch_names, scmp_arch, kernel }
    }
}

/// Go-style names and the libseccomp name of a Rust `target_arch`.
pub(crate) fn arch_names(rust_arch: &str) -> (&'static [&'static str], &'static str) {
    match rust_arch {
        "x86_64" => (&["amd64", "x86_64"], "SCMP_ARCH_X86_64"),
        "x86" => (&["386", "x86", "i386", "i686"], "SCMP_ARCH_X86"),
        "aarch64" => (&["arm64", "aarch64"], "SCMP_ARCH_AARCH64"),
        "arm" => (&["arm"], "SCMP_ARCH_ARM"),
        "powerpc64" if cfg!(target_endian = "little") => (&["ppc64le"], "SCMP_ARCH_PPC64LE"),
        "powerpc64" => (&["ppc64"], "SCMP_ARCH_PPC64"),
        "powerpc" => (&["ppc"], "SCMP_ARCH_PPC"),
        "s390x" => (&["s390x"], "SCMP_ARCH_S390X"),
        "riscv64" => (&["riscv64"], "SCMP_ARCH_RISCV64"),
        "loongarch64" => (&["loong64", "loongarch64"], "SCMP_ARCH_LOONGARCH64"),
        "mips64" if cfg!(target_endian = "little") => (&["mips64le"], "SCMP_ARCH_MIPSEL64"),
        "mips64" => (&["mips64"], "SCMP_ARCH_MIPS64"),
        "mips" if cfg!(target_endian = "little") => (&["mipsle"], "SCMP_ARCH_MIPSEL"),
        "mips" => (&["mips"], "SCMP_ARCH_MIPS"),
        _ => (&[], "SCMP_ARCH_NATIVE"),
    }
}

/// `"6.8.0-49-generic"` or `"4.8"` -> `(6, 8)`.
pub(crate) fn parse_kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Parse a profile (Docker's format or the OCI runtime-spec `LinuxSeccomp`) and resolve it
/// for a container holding `caps` (its bounding set, `"CAP_SYS_ADMIN"` or `"SYS_ADMIN"`) on
/// this host.
///
/// The result no longer depends on capabilities or the host: conditional entries are kept
/// or dropped, `archMap` is turned into `architectures`.
///
/// # Errors
///
/// [`Error::Json`] for malformed JSON or a missing `defaultAction`/`action`,
/// [`Error::UnknownAction`], [`Error::UnknownOperator`], [`Error::UnknownArch`],
/// [`Error::UnknownFlag`] for unknown names, [`Error::Invalid`] for contradictions.
pub fn parse_profile(json: &[u8], caps: &[String]) -> Result<LinuxSeccomp> {
    let profile: Profile = serde_json::from_slice(json).map_err(|source| Error::Json { source })?;
    resolve(&profile, caps, &Host::current())
}

/// Turn the value of `--security-opt seccomp=...` into what goes into `linux.seccomp`:
/// no option means Docker's default profile, `unconfined` means no filter at all, anything
/// else is the path of a profile file (see [`parse_profile`]).
///
/// # Errors
///
/// [`Error::Read`] if the file cannot be read, or any error of [`parse_profile`].
pub fn from_security_opt(opt: Option<&str>, caps: &[String]) -> Result<Option<LinuxSeccomp>> {
    match opt {
        None | Some("") | Some("builtin") => Ok(Some(crate::docker_default(caps))),
        Some("unconfined") => Ok(None),
        Some(path) => {
            let path = Path::new(path);
            let json = std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
            parse_profile(&json, caps).map(Some)
        }
    }
}

/// `"sys_admin"` / `"CAP_SYS_ADMIN"` -> `"CAP_SYS_ADMIN"`.
fn normalize_cap(cap: &str) -> String {
    let cap = cap.trim().to_ascii_uppercase();
    if cap.starts_with("CAP_") {
        cap
    } else {
        format!("CAP_{cap}")
    }
}

/// Resolve `profile` for a container holding `caps` on `host`.
pub(crate) fn resolve(profile: &Profile, caps: &[String], host: &Host) -> Result<LinuxSeccomp> {
    let held: HashSet<String> = caps.iter().map(|c| normalize_cap(c)).collect();

    let mut out = LinuxSeccomp::default();
    out.set_default_action(parse_action(&profile.default_action, "as defaultAction")?);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_listener_path(profile.listener_path.clone());
    out.set_listener_metadata(profile.listener_metadata.clone());

    // architectures
    let listed = profile.architectures.as_deref().unwrap_or_default();
    let mapped = profile.arch_map.as_deref().unwrap_or_default();
    if !listed.is_empty() && !mapped.is_empty() {
        return Err(Error::Invalid { reason: "both architectures and archMap are set, use one".into() });
    }
    let mut arches: Vec<Arch> = Vec::new();
    let mut push_arch = |name: &str| -> Result<()> {
        if let Some(arch) = parse_arch(name)? {
            if !arches.contains(&arch) {
                arches.push(arch);
            }
        }
        Ok(())
    };
    for name in listed {
        push_arch(name)?;
    }
    for entry in mapped {
        let subs = entry.sub_architectures.as_deref().unwrap_or_default();
        if entry.architecture == host.scmp_arch {
            push_arch(&entry.architecture)?;
            for sub in subs {
                push_arch(sub)?;
            }
        } else {
            // not ours, but a typo should still be reported
            for name in std::iter::once(&entry.architecture).chain(subs) {
                check_arch_name(name)?;
            }
        }
    }
    out.set_architectures((!arches.is_empty()).then_some(arches));

    // flags
    if let Some(flags) = &profile.flags {
        let flags = flags
            .iter()
            .map(|f| {
                serde_json::from_value::<LinuxSeccompFilterFlag>(serde_json::Value::String(f.clone()))
                    .map_err(|_| Error::UnknownFlag { flag: f.clone() })
            })
            .collect::<Result<Vec<_>>>()?;
        out.set_flags((!flags.is_empty()).then_some(flags));
    }

    // syscalls
    let mut syscalls = Vec::new();
    for entry in profile.syscalls.as_deref().unwrap_or_default() {
        if let Some(rule) = resolve_syscall(entry, &held, host)? {
            syscalls.push(rule);
        }
    }
    out.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
    Ok(out)
}

/// One entry: validated always, kept only if its conditions hold.
fn resolve_syscall(entry: &Syscall, held: &HashSet<String>, host: &Host) -> Result<Option<LinuxSyscall>> {
    let mut names = entry.names.clone().unwrap_or_default();
    if let Some(name) = &entry.name {
        if !names.is_empty() {
            return Err(Error::Invalid { reason: format!("syscall entry {names:?} sets both name and names") });
        }
        names.push(name.clone());
    }
    let context = format!("for syscalls {names:?}");
    let action = parse_action(&entry.action, &context)?;
    let mut args = Vec::new();
    for arg in entry.args.as_deref().unwrap_or_default() {
        if arg.index > 5 {
            return Err(Error::Invalid {
                reason: format!("argument index {} out of range 0..=5 {context}", arg.index),
            });
        }
        let mut builder =
            LinuxSeccompArgBuilder::default().index(arg.index).value(arg.value).op(parse_op(&arg.op, &context)?);
        if let Some(two) = arg.value_two {
            builder = builder.value_two(two);
        }
        args.push(builder.build().map_err(|e| Error::Invalid { reason: format!("argument {context}: {e}") })?);
    }
    let includes = entry.includes.clone().unwrap_or_default();
    let excludes = entry.excludes.clone().unwrap_or_default();
    let min_kernel =
        match &includes.min_kernel {
            Some(v) => Some(parse_kernel_version(v).ok_or_else(|| Error::Invalid {
                reason: format!("minKernel {v:?} is not a kernel version {context}"),
            })?),
            None => None,
        };
    if names.is_empty() {
        tracing::debug!("seccomp: syscall entry without names ignored");
        return Ok(None);
    }

    // conditions, in moby's order
    let on_host = |arches: &Option<Vec<String>>| {
        arches.iter().flatten().any(|a| host.arch_names.iter().any(|h| h.eq_ignore_ascii_case(a)))
    };
    if on_host(&excludes.arches) {
        return Ok(None);
    }
    if includes.arches.as_ref().is_some_and(|a| !a.is_empty()) && !on_host(&includes.arches) {
        return Ok(None);
    }
    if let Some(min) = min_kernel {
        if host.kernel.is_none_or(|k| k < min) {
            return Ok(None);
        }
    }
    if excludes.caps.iter().flatten().any(|c| held.contains(&normalize_cap(c))) {
        return Ok(None);
    }
    if !includes.caps.iter().flatten().all(|c| held.contains(&normalize_cap(c))) {
        return Ok(None);
    }

    let mut out = LinuxSyscall::default();
    out.set_names(names);
    out.set_action(action);
    out.set_errno_ret(entry.errno_ret);
    out.set_args((!args.is_empty()).then_some(args));
    Ok(Some(out))
}

pub(crate) fn parse_action(action: &str, context: &str) -> Result<LinuxSeccompAction> {
    Ok(match action {
        "SCMP_ACT_KILL" => LinuxSeccompAction::ScmpActKill,
        "SCMP_ACT_KILL_THREAD" => LinuxSeccompAction::ScmpActKillThread,
        "SCMP_ACT_KILL_PROCESS" => LinuxSeccompAction::ScmpActKillProcess,
        "SCMP_ACT_TRAP" => LinuxSeccompAction::ScmpActTrap,
        "SCMP_ACT_ERRNO" => LinuxSeccompAction::ScmpActErrno,
        "SCMP_ACT_NOTIFY" => LinuxSeccompAction::ScmpActNotify,
        "SCMP_ACT_TRACE" => LinuxSeccompAction::ScmpActTrace,
        "SCMP_ACT_LOG" => LinuxSeccompAction::ScmpActLog,
        "SCMP_ACT_ALLOW" => LinuxSeccompAction::ScmpActAllow,
        _ => return Err(Error::UnknownAction { action: action.to_owned(), context: context.to_owned() }),
    })
}

fn parse_op(op: &str, context: &str) -> Result<LinuxSeccompOperator> {
    Ok(match op {
        "SCMP_CMP_NE" => LinuxSeccompOperator::ScmpCmpNe,
        "SCMP_CMP_LT" => LinuxSeccompOperator::ScmpCmpLt,
        "SCMP_CMP_LE" => LinuxSeccompOperator::ScmpCmpLe,
        "SCMP_CMP_EQ" => LinuxSeccompOperator::ScmpCmpEq,
        "SCMP_CMP_GE" => LinuxSeccompOperator::ScmpCmpGe,
        "SCMP_CMP_GT" => LinuxSeccompOperator::ScmpCmpGt,
        "SCMP_CMP_MASKED_EQ" => LinuxSeccompOperator::ScmpCmpMaskedEq,
        _ => return Err(Error::UnknownOperator { op: op.to_owned(), context: context.to_owned() }),
    })
}

/// Fails unless libseccomp or the OCI spec knows `name`.
fn check_arch_name(name: &str) -> Result<()> {
    lookup_arch(name).map(|_| ())
}

/// `"SCMP_ARCH_X86_64"` -> the OCI arch. `Ok(None)` (with a warning) for architectures
/// libseccomp knows but the OCI spec types cannot carry (loongarch64, m68k, parisc, sh).
fn parse_arch(name: &str) -> Result<Option<Arch>> {
    let arch = lookup_arch(name)?;
    if arch.is_none() {
        tracing::warn!(arch = name, "seccomp: architecture not representable in the oci spec, ignored");
    }
    Ok(arch)
}

fn lookup_arch(name: &str) -> Result<Option<Arch>> {
    if let Ok(arch) = serde_json::from_value::<Arch>(serde_json::Value::String(name.to_owned())) {
        return Ok(Some(arch));
    }
    match name.parse::<libseccomp::ScmpArch>() {
        Ok(_) => Ok(None),
        Err(_) => Err(Error::UnknownArch { arch: name.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    fn amd64() -> Host {
        Host { arch_names: &["amd64", "x86_64"], scmp_arch: "SCMP_ARCH_X86_64", kernel: Some((6, 1)) }
    }

    fn s390x() -> Host {
        Host { arch_names: &["s390x"], scmp_arch: "SCMP_ARCH_S390X", kernel: Some((4, 4)) }
    }

    fn resolve_json(json: &str, caps: &[String], host: &Host) -> Result<LinuxSeccomp> {
        let profile: Profile = serde_json::from_str(json).map_err(|source| Error::Json { source })?;
        resolve(&profile, caps, host)
    }

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls().iter().flatten().flat_map(|r| r.names().clone()).collect()
    }

    const DOCKER_STYLE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
            {"architecture": "SCMP_ARCH_LOONGARCH64", "subArchitectures": null}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
             "comment": "", "includes": {}, "excludes": {}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["both"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "4.8"}},
            {"name": "old_style", "action": "SCMP_ACT_LOG"}
        ]
    }"#;

    #[test]
    fn docker_format_without_sys_admin() {
        let s = resolve_json(DOCKER_STYLE, &caps(&["CAP_CHOWN"]), &amd64()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(names(&s), ["read", "write", "clone", "clone3", "arch_prctl", "ptrace", "old_style"]);
        let rules = s.syscalls().as_ref().unwrap();
        let clone = &rules[1];
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((arg.index(), arg.value(), arg.value_two()), (0, 0x7E02_0000, Some(0)));
        assert_eq!(rules[2].errno_ret(), Some(38));
        assert_eq!(rules[5].action(), LinuxSeccompAction::ScmpActLog);
    }

    #[test]
    fn docker_format_with_sys_admin() {
        let s = resolve_json(DOCKER_STYLE, &caps(&["sys_admin"]), &amd64()).unwrap();
        assert_eq!(names(&s), ["read", "write", "mount", "arch_prctl", "ptrace", "old_style"]);
        let s = resolve_json(DOCKER_STYLE, &caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]), &amd64()).unwrap();
        assert!(names(&s).contains(&"both".to_string()));
    }

    #[test]
    fn docker_format_other_host() {
        // s390x: its archMap entry, no clone rule (excluded arch), no arch_prctl, old kernel
        let s = resolve_json(DOCKER_STYLE, &[], &s390x()).unwrap();
        assert_eq!(s.architectures().as_deref(), Some(&[Arch::ScmpArchS390x, Arch::ScmpArchS390][..]));
        assert_eq!(names(&s), ["read", "write", "clone3", "old_style"]);
    }

    #[test]
    fn oci_format() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}
            ]
        }"#;
        let s = parse_profile(json.as_bytes(), &[]).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActKillProcess);
        assert_eq!(s.architectures().as_deref(), Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchAarch64][..]));
        assert_eq!(s.flags().as_deref(), Some(&[LinuxSeccompFilterFlag::SeccompFilterFlagLog][..]));
        assert_eq!(names(&s), ["getpid", "personality", "kill"]);
        // the same document through oci-spec's own types gives the same value
        let direct: LinuxSeccomp = serde_json::from_str(json).unwrap();
        assert_eq!(direct, s);
    }

    #[test]
    fn bad_json_is_an_error() {
        for json in ["", "{", "[]", "{\"syscalls\": []}", "{\"defaultAction\": 3}", "\u{0}"] {
            let err = parse_profile(json.as_bytes(), &[]).unwrap_err();
            assert!(matches!(err, Error::Json { .. }), "{json:?}: {err}");
            assert!(err.to_string().starts_with("parse seccomp profile: "), "{err}");
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = parse_profile(br#"{"defaultAction": "SCMP_ACT_NOPE"}"#, &[]).unwrap_err();
        assert!(matches!(err, Error::UnknownAction { .. }));
        assert_eq!(err.to_string(), "unknown seccomp action \"SCMP_ACT_NOPE\" as defaultAction");

        let err = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_ERRNO",
                 "syscalls": [{"names": ["read"], "action": "ALLOW"}]}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "unknown seccomp action \"ALLOW\" for syscalls [\"read\"]");

        let err = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                 "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "EQ"}]}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, Error::UnknownOperator { .. }), "{err}");

        let err = parse_profile(br#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]}"#, &[])
            .unwrap_err();
        assert_eq!(err.to_string(), "unknown seccomp architecture \"SCMP_ARCH_VAX\"");

        let err = parse_profile(br#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}"#, &[])
            .unwrap_err();
        assert!(matches!(err, Error::UnknownFlag { .. }), "{err}");
    }

    #[test]
    fn contradictions_are_errors() {
        for json in [
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
        ] {
            let err = parse_profile(json.as_bytes(), &[]).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{json}: {err}");
        }
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.8.0-49-generic"), Some((6, 8)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5"), Some((5, 0)));
        assert_eq!(parse_kernel_version("x"), None);
        assert!(Host::current().kernel.is_some());
    }

    #[test]
    fn security_opt() {
        assert!(from_security_opt(Some("unconfined"), &[]).unwrap().is_none());
        assert!(from_security_opt(None, &[]).unwrap().is_some());
        let err = from_security_opt(Some("/nonexistent/profile.json"), &[]).unwrap_err();
        assert!(err.to_string().starts_with("read seccomp profile /nonexistent/profile.json: "), "{err}");
    }
}
