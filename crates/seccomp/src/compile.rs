//! `LinuxSeccomp` -> libseccomp filter -> BPF, and loading it.
//!
//! Follows runc's `libcontainer/seccomp` semantics:
//! - syscall names libseccomp cannot resolve are skipped (debug log), not an error;
//! - a rule whose action equals the default action is skipped (libseccomp refuses it);
//! - ERRNO and TRACE take their value from `errnoRet`, EPERM when unset;
//!   `defaultErrnoRet` only goes with a default action of ERRNO or TRACE;
//! - several comparisons on the same argument index are OR'ed: each becomes its own rule
//!   (libseccomp only allows one comparison per argument in a rule); otherwise all
//!   comparisons of an entry are AND'ed in a single rule;
//! - the filter does not set `no_new_privs` itself: the runtime decides that from
//!   `process.noNewPrivileges`, and a process holding `CAP_SYS_ADMIN` may load without it.

use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::{Error, Result};

/// Size in bytes of one classic BPF instruction (`struct sock_filter`) in the output of
/// [`compile_bpf`]: `bpf.len() / BPF_INSTRUCTION_LEN` is the instruction count.
pub const BPF_INSTRUCTION_LEN: usize = 8;

/// Build the filter for `seccomp` and return its BPF program (native byte order, 8 bytes
/// per instruction, as the kernel takes it) without loading it. For tests and `cove info`.
///
/// # Errors
///
/// [`Error::Invalid`] / [`Error::Unsupported`] for values the filter cannot express,
/// [`Error::Seccomp`] if libseccomp refuses a rule, [`Error::Export`] on I/O failure.
pub fn compile_bpf(seccomp: &LinuxSeccomp) -> Result<Vec<u8>> {
    let ctx = build(seccomp)?;
    // The system libseccomp may predate seccomp_export_bpf_mem (2.6), so export to an
    // anonymous in-memory file and read it back.
    let fd = nix::sys::memfd::memfd_create("cove-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|errno| Error::Export { source: errno.into() })?;
    ctx.export_bpf(&fd).map_err(|source| Error::Seccomp { context: "export seccomp filter".into(), source })?;
    let mut file = std::fs::File::from(fd);
    let mut bpf = Vec::new();
    file.rewind().and_then(|()| file.read_to_end(&mut bpf)).map_err(|source| Error::Export { source })?;
    tracing::debug!(instructions = bpf.len() / BPF_INSTRUCTION_LEN, "seccomp: filter compiled");
    Ok(bpf)
}

/// Build the filter for `seccomp` and load it into the calling thread (all threads if the
/// spec sets `SECCOMP_FILTER_FLAG_TSYNC`).
///
/// Call it in the container process as late as possible before `execve` (every syscall
/// after it is filtered), after `prctl(PR_SET_NO_NEW_PRIVS)` or while holding
/// `CAP_SYS_ADMIN`. Architectures: the native one always, plus those listed in the spec
/// (for Docker's default on x86_64: x86 and x32); syscalls of other ABIs kill the thread.
///
/// # Errors
///
/// As [`compile_bpf`], plus [`Error::Load`] if the kernel refuses the filter (`EACCES`:
/// neither `no_new_privs` nor `CAP_SYS_ADMIN`).
pub fn load(seccomp: &LinuxSeccomp) -> Result<()> {
    let ctx = build(seccomp)?;
    ctx.load().map_err(|e| {
        let errno = e.sysrawrc().map_or(libc::ECANCELED, |rc| rc.abs());
        Error::Load {
            source: std::io::Error::from_raw_os_error(errno),
            hint: if errno == libc::EACCES { " (set no_new_privs or hold CAP_SYS_ADMIN before loading)" } else { "" },
        }
    })?;
    tracing::debug!("seccomp: filter loaded");
    Ok(())
}

fn seccomp_err(context: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> Error {
    let context = context.into();
    move |source| Error::Seccomp { context, source }
}

/// The libseccomp filter for `seccomp`.
fn build(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    if seccomp.default_errno_ret().is_some()
        && !matches!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace)
    {
        return Err(Error::Invalid {
            reason: format!(
                "defaultErrnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {}",
                seccomp.default_action()
            ),
        });
    }
    let default = action(seccomp.default_action(), seccomp.default_errno_ret(), "as default action")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(seccomp_err("create seccomp filter"))?;
    // The runtime owns no_new_privs; libseccomp would otherwise set it on load.
    ctx.set_ctl_nnp(false).map_err(seccomp_err("clear seccomp no_new_privs attribute"))?;
    // Report the kernel's errno on load failure instead of ECANCELED (libseccomp >= 2.5).
    if let Err(e) = ctx.set_api_sysrawrc(true) {
        tracing::debug!("seccomp: cannot enable raw error codes: {e}");
    }

    for arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch)).map_err(seccomp_err(format!("add architecture {arch} to seccomp filter")))?;
    }

    for flag in seccomp.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        }
        .map_err(seccomp_err(format!("set seccomp filter flag {flag}")))?;
    }

    for rule in seccomp.syscalls().iter().flatten() {
        let context = format!("for syscalls {:?}", rule.names());
        let act = action(rule.action(), rule.errno_ret(), &context)?;
        if act == default {
            tracing::debug!(names = ?rule.names(), "seccomp: rule has the default action, skipped");
            continue;
        }
        let args = rule.args().as_deref().unwrap_or_default();
        let conditions: Vec<ScmpArgCompare> = args.iter().map(|a| condition(a, &context)).collect::<Result<_>>()?;
        let repeated_index = args.iter().enumerate().any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
        // either one rule with all conditions AND'ed, or one rule per condition (OR)
        let rule_sets: Vec<&[ScmpArgCompare]> =
            if repeated_index { conditions.iter().map(std::slice::from_ref).collect() } else { vec![&conditions[..]] };

        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, skipped");
                continue;
            };
            for conds in &rule_sets {
                ctx.add_rule_conditional(act, syscall, conds)
                    .map_err(seccomp_err(format!("add seccomp rule for {name}")))?;
            }
        }
    }
    Ok(ctx)
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>, context: &str) -> Result<ScmpAction> {
    let value = || -> Result<u16> {
        let value = errno_ret.unwrap_or(libc::EPERM as u32);
        u16::try_from(value)
            .map_err(|_| Error::Invalid { reason: format!("errnoRet {value} does not fit in 16 bits {context}") })
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(value()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(value()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Unsupported { what: format!("SCMP_ACT_NOTIFY {context}") })
        }
    })
}

fn condition(arg: &LinuxSeccompArg, context: &str) -> Result<ScmpArgCompare> {
    let index = u32::try_from(arg.index()).ok().filter(|i| *i <= 5).ok_or_else(|| Error::Invalid {
        reason: format!("argument index {} out of range 0..=5 {context}", arg.index()),
    })?;
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // OCI: (arg & value) == valueTwo
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0))
        }
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}
