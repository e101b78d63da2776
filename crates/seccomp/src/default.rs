//! Docker's default seccomp profile, as data.
//!
//! The semantics of moby's `profiles/seccomp/default.json` (Docker 25+), written from
//! scratch as a table: default action `ERRNO(EPERM)`; one big group of syscalls every
//! container may use; groups that only a capability unlocks; argument-filtered rules
//! (`clone` without namespace flags, `clone3` -> ENOSYS, `personality`, `socket` without
//! `AF_VSOCK`); and groups only for some architectures.
//!
//! Rows are resolved by the same code as a user profile file ([`crate::profile`]), so the
//! include/exclude rules behave identically for both.
//!
//! What Docker's default deliberately leaves out (so they get EPERM) includes: `io_uring_*`
//! (removed in Docker 25), `keyctl`/`add_key`/`request_key` (keyrings are not namespaced),
//! `userfaultfd`, `swapon`/`swapoff`, `kexec_*`, `pivot_root`, `nfsservctl`, `uselib`,
//! `ustat`, `sysfs`, `_sysctl`, `vm86`, `clock_settime` without `CAP_SYS_TIME`, `mount` and
//! friends without `CAP_SYS_ADMIN`.

use crate::profile::{self, ArchMap, Filter, Host, Profile, Syscall};
use oci_spec::runtime::LinuxSeccomp;

/// Docker's default capability set: what `docker run` grants without `--cap-add`.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's default seccomp profile resolved for a container whose bounding set is `caps`
/// (`"CAP_SYS_ADMIN"` or `"SYS_ADMIN"` style) on this host.
///
/// - default action `SCMP_ACT_ERRNO` with `defaultErrnoRet` EPERM;
/// - architectures: the native one plus what it can also execute (on x86_64: x86 and x32;
///   on aarch64: arm; on s390x: s390; ...);
/// - the unconditional allow-list, plus the syscalls unlocked by the capabilities held:
///   `CAP_SYS_ADMIN` (mount, umount2, unshare, setns, clone with namespace flags, clone3,
///   bpf, perf_event_open, the new mount API, sethostname, ...), `CAP_SYS_PTRACE` (ptrace,
///   process_vm_readv/writev, kcmp, pidfd_getfd, process_madvise), `CAP_SYS_MODULE`,
///   `CAP_SYS_BOOT`, `CAP_SYS_TIME`, `CAP_SYS_NICE` (NUMA memory policy), `CAP_SYS_RAWIO`
///   (iopl/ioperm), `CAP_SYS_PACCT`, `CAP_SYSLOG`, `CAP_SYS_CHROOT`, `CAP_SYS_TTY_CONFIG`,
///   `CAP_DAC_READ_SEARCH` (open_by_handle_at), `CAP_BPF`, `CAP_PERFMON`;
/// - without `CAP_SYS_ADMIN`: `clone` only without `CLONE_NEW*` flags, `clone3` fails with
///   ENOSYS (so glibc falls back to `clone`);
/// - `personality` only for `PER_LINUX`, `PER_LINUX32`, `UNAME26`, `UNAME26|PER_LINUX32`
///   and the query value `0xffffffff`;
/// - `socket` for every family except `AF_VSOCK`;
/// - ptrace and process_vm_readv/writev for everyone on kernels >= 4.8 (before 4.8 ptrace
///   could bypass seccomp).
///
/// `CAP_SYS_RESOURCE` unlocks nothing: Docker has no seccomp group for it.
pub fn docker_default(caps: &[String]) -> LinuxSeccomp {
    profile::resolve(&docker_default_profile(), caps, &Host::current())
        .expect("the built-in default profile is valid (covered by unit tests)")
}

/// The unresolved profile, as if read from Docker's `default.json`.
pub(crate) fn docker_default_profile() -> Profile {
    let strings =
        |s: &[&str]| -> Option<Vec<String>> { (!s.is_empty()).then(|| s.iter().map(|s| s.to_string()).collect()) };
    let syscalls = GROUPS
        .iter()
        .map(|g| Syscall {
            names: strings(g.names),
            name: None,
            action: match g.action {
                Act::Allow => "SCMP_ACT_ALLOW",
                Act::Errno(_) => "SCMP_ACT_ERRNO",
            }
            .into(),
            errno_ret: match g.action {
                Act::Allow => None,
                Act::Errno(e) => Some(e),
            },
            args: (!g.args.is_empty()).then(|| {
                g.args
                    .iter()
                    .map(|a| profile::Arg {
                        index: a.index,
                        value: a.value,
                        value_two: Some(a.value_two),
                        op: a.op.into(),
                    })
                    .collect()
            }),
            includes: Some(Filter {
                caps: strings(g.caps),
                arches: strings(g.arches),
                min_kernel: g.min_kernel.map(Into::into),
            }),
            excludes: Some(Filter { caps: strings(g.not_caps), arches: strings(g.not_arches), min_kernel: None }),
        })
        .collect();
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: Some(
            ARCH_MAP
                .iter()
                .map(|(arch, subs)| ArchMap { architecture: arch.to_string(), sub_architectures: strings(subs) })
                .collect(),
        ),
        syscalls: Some(syscalls),
        ..Profile::default()
    }
}

/// Native architecture -> the others its kernel can run (moby's `archMap`).
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    ("SCMP_ARCH_MIPS64", &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
    ("SCMP_ARCH_MIPS64N32", &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]),
    ("SCMP_ARCH_MIPSEL64", &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]),
    ("SCMP_ARCH_MIPSEL64N32", &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_PPC64LE", &[]),
    ("SCMP_ARCH_RISCV64", &[]),
];

#[derive(Clone, Copy)]
enum Act {
    Allow,
    Errno(u32),
}

/// One argument comparison (`value_two` is the expected value for `SCMP_CMP_MASKED_EQ`).
struct Cmp {
    index: usize,
    value: u64,
    value_two: u64,
    op: &'static str,
}

/// One row of the table: Docker's `syscalls[]` entry.
struct Group {
    names: &'static [&'static str],
    action: Act,
    args: &'static [Cmp],
    /// `includes.caps`: all of them must be held
    caps: &'static [&'static str],
    /// `excludes.caps`: none of them may be held
    not_caps: &'static [&'static str],
    /// `includes.arches`: the host must be one of them (Go names)
    arches: &'static [&'static str],
    /// `excludes.arches`
    not_arches: &'static [&'static str],
    /// `includes.minKernel`
    min_kernel: Option<&'static str>,
}

const ALLOW: Group = Group {
    names: &[],
    action: Act::Allow,
    args: &[],
    caps: &[],
    not_caps: &[],
    arches: &[],
    not_arches: &[],
    min_kernel: None,
};

/// The namespace-creating clone flags: NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
/// NEWPID | NEWNET (0x7E020000).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `personality(value)` is allowed.
macro_rules! personality {
    ($value:expr) => {
        Group {
            names: &["personality"],
            args: &[Cmp { index: 0, value: $value, value_two: 0, op: "SCMP_CMP_EQ" }],
            ..ALLOW
        }
    };
}

#[rustfmt::skip]
const GROUPS: &[Group] = &[
    // Everything an ordinary process needs. Names that only exist on 32-bit ABIs
    // (chown32, _llseek, socketcall, ...) are harmless on 64-bit: they resolve for the x86/arm
    // sub-architecture or are skipped. Names newer than the system libseccomp are skipped.
    Group { names: &[
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
        "capget", "capset", "chdir", "chmod", "chown", "chown32",
        "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
        "close", "close_range", "connect", "copy_file_range", "creat",
        "dup", "dup2", "dup3",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
        "execve", "execveat", "exit", "exit_group",
        "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
        "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
        "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
        "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
        "fsync", "ftruncate", "ftruncate64",
        "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
        "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
        "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
        "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp",
        "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32",
        "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
        "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
        "getuid", "getuid32", "getxattr", "getxattrat",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
        "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
        "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
        "ipc", "kill",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
        "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount",
        "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "lstat64",
        "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
        "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall",
        "mmap", "mmap2", "mprotect",
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
        "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
        "munlock", "munlockall", "munmap",
        "name_to_handle_at", "nanosleep", "newfstatat", "_newselect",
        "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal",
        "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
        "prlimit64", "process_mrelease", "pselect6", "pselect6_time64",
        "pwrite64", "pwritev", "pwritev2",
        "read", "readahead", "readlink", "readlinkat", "readv",
        "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
        "removexattr", "removexattrat", "rename", "renameat", "renameat2",
        "restart_syscall", "rmdir", "rseq",
        "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
        "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
        "rt_tgsigqueueinfo",
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield",
        "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64",
        "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
        "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
        "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
        "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
        "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
        "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat",
        "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
        "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair",
        "splice", "stat", "stat64", "statfs", "statfs64", "statmount", "statx",
        "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
        "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
        "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
        "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
        "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
        "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe",
        "utime", "utimensat", "utimensat_time64", "utimes",
        "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    ], ..ALLOW },

    // socket(2) for every address family but AF_VSOCK: vsock reaches the hypervisor/host
    // and is not network-namespaced.
    Group { names: &["socket"],
        args: &[Cmp { index: 0, value: libc::AF_VSOCK as u64, value_two: 0, op: "SCMP_CMP_NE" }],
        ..ALLOW },

    // ptrace could be used to bypass seccomp before Linux 4.8; from 4.8 on, it is allowed
    // for everyone (the kernel's own ptrace checks still apply).
    Group { names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        min_kernel: Some("4.8"), ..ALLOW },

    // personality(2): only the harmless execution domains (PER_LINUX, PER_LINUX32, UNAME26,
    // UNAME26|PER_LINUX32) and the query 0xffffffff. Others such as READ_IMPLIES_EXEC or
    // ADDR_NO_RANDOMIZE weaken exploit mitigations.
    personality!(0x0),
    personality!(0x8),
    personality!(0x20000),
    personality!(0x20008),
    personality!(0xffff_ffff),

    // --- architecture-specific -----------------------------------------------------------
    Group { names: &["sync_file_range2", "swapcontext"], arches: &["ppc64le"], ..ALLOW },
    Group { names: &[
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
        "cacheflush", "set_tls",
    ], arches: &["arm", "arm64"], ..ALLOW },
    Group { names: &["arch_prctl"], arches: &["amd64", "x32"], ..ALLOW },
    Group { names: &["modify_ldt"], arches: &["amd64", "x32", "x86"], ..ALLOW },
    Group { names: &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        arches: &["s390", "s390x"], ..ALLOW },
    Group { names: &["riscv_flush_icache"], arches: &["riscv64"], ..ALLOW },

    // --- unlocked by a capability --------------------------------------------------------
    // CAP_DAC_READ_SEARCH: open a file by handle, bypassing path permission checks
    Group { names: &["open_by_handle_at"], caps: &["CAP_DAC_READ_SEARCH"], ..ALLOW },
    // CAP_SYS_ADMIN: mounts (old and new API), namespaces, quota, host/domain name,
    // tracing/BPF (kernels before 5.8 gated bpf and perf on CAP_SYS_ADMIN), fanotify
    Group { names: &[
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare",
    ], caps: &["CAP_SYS_ADMIN"], ..ALLOW },
    // Without CAP_SYS_ADMIN: clone(2) only if no CLONE_NEW* flag is set (flags are argument
    // 0; on s390 the first two arguments are swapped, see below).
    Group { names: &["clone"],
        args: &[Cmp { index: 0, value: CLONE_NAMESPACE_FLAGS, value_two: 0, op: "SCMP_CMP_MASKED_EQ" }],
        not_caps: &["CAP_SYS_ADMIN"], not_arches: &["s390", "s390x"], ..ALLOW },
    Group { names: &["clone"],
        args: &[Cmp { index: 1, value: CLONE_NAMESPACE_FLAGS, value_two: 0, op: "SCMP_CMP_MASKED_EQ" }],
        not_caps: &["CAP_SYS_ADMIN"], arches: &["s390", "s390x"], ..ALLOW },
    // Without CAP_SYS_ADMIN: clone3(2) passes its flags in memory, which seccomp cannot
    // inspect. ENOSYS makes glibc (and others) fall back to clone(2), which is filtered above.
    Group { names: &["clone3"], action: Act::Errno(libc::ENOSYS as u32),
        not_caps: &["CAP_SYS_ADMIN"], ..ALLOW },
    // CAP_SYS_BOOT
    Group { names: &["reboot"], caps: &["CAP_SYS_BOOT"], ..ALLOW },
    // CAP_SYS_CHROOT (in Docker's default capability set)
    Group { names: &["chroot"], caps: &["CAP_SYS_CHROOT"], ..ALLOW },
    // CAP_SYS_MODULE: kernel modules
    Group { names: &["delete_module", "init_module", "finit_module"],
        caps: &["CAP_SYS_MODULE"], ..ALLOW },
    // CAP_SYS_PACCT: process accounting
    Group { names: &["acct"], caps: &["CAP_SYS_PACCT"], ..ALLOW },
    // CAP_SYS_PTRACE: inspect and manipulate other processes (also the pre-4.8 kernels'
    // only way to get ptrace)
    Group { names: &[
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ], caps: &["CAP_SYS_PTRACE"], ..ALLOW },
    // CAP_SYS_RAWIO: I/O port access
    Group { names: &["iopl", "ioperm"], caps: &["CAP_SYS_RAWIO"], ..ALLOW },
    // CAP_SYS_TIME: the clock is not namespaced
    Group { names: &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        caps: &["CAP_SYS_TIME"], ..ALLOW },
    // CAP_SYS_TTY_CONFIG
    Group { names: &["vhangup"], caps: &["CAP_SYS_TTY_CONFIG"], ..ALLOW },
    // CAP_SYS_NICE: NUMA memory policy
    Group { names: &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
        caps: &["CAP_SYS_NICE"], ..ALLOW },
    // CAP_SYSLOG: the kernel log
    Group { names: &["syslog"], caps: &["CAP_SYSLOG"], ..ALLOW },
    // CAP_BPF (Linux 5.8+ split it out of CAP_SYS_ADMIN)
    Group { names: &["bpf"], caps: &["CAP_BPF"], ..ALLOW },
    // CAP_PERFMON (Linux 5.8+)
    Group { names: &["perf_event_open"], caps: &["CAP_PERFMON"], ..ALLOW },
];

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};

    fn caps(extra: &[&str]) -> Vec<String> {
        DOCKER_DEFAULT_CAPS.iter().chain(extra).map(|c| c.to_string()).collect()
    }

    fn rules<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls().iter().flatten().filter(|r| r.names().iter().any(|n| n == name)).collect()
    }

    fn unconditionally_allowed(s: &LinuxSeccomp, name: &str) -> bool {
        rules(s, name).iter().any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
    }

    #[test]
    fn table_resolves_for_every_host() {
        for arch in
            ["x86_64", "x86", "aarch64", "arm", "powerpc64", "s390x", "riscv64", "loongarch64", "mips64", "sparc64"]
        {
            let (arch_names, scmp_arch) = profile::arch_names(arch);
            let host = Host { arch_names, scmp_arch, kernel: Some((6, 1)) };
            profile::resolve(&docker_default_profile(), &caps(&[]), &host).unwrap();
        }
    }

    #[test]
    fn defaults() {
        let s = docker_default(&caps(&[]));
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(libc::EPERM as u32));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                s.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
            assert!(unconditionally_allowed(&s, "arch_prctl"));
            assert!(rules(&s, "cacheflush").is_empty());
        }
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
    }

    #[test]
    fn without_sys_admin() {
        let s = docker_default(&caps(&[]));
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "reboot",
            "init_module",
            "kcmp",
            "iopl",
            "clock_settime",
            "acct",
            "syslog",
            "open_by_handle_at",
            "mbind",
            "vhangup",
            "keyctl",
            "io_uring_setup",
        ] {
            assert!(rules(&s, name).is_empty(), "{name} must not be allowed");
        }
        for name in ["read", "getpid", "chroot", "execve", "fork", "ptrace"] {
            assert!(unconditionally_allowed(&s, name), "{name} must be allowed");
        }
        // clone: only the masked rule
        let clone = rules(&s, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((arg.value(), arg.value_two()), (CLONE_NAMESPACE_FLAGS, Some(0)));
        // clone3: ENOSYS
        let clone3 = rules(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        // personality: five value rules
        let values: Vec<u64> = rules(&s, "personality").iter().map(|r| r.args().as_ref().unwrap()[0].value()).collect();
        assert_eq!(values, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        // socket: not AF_VSOCK
        let socket = rules(&s, "socket");
        let arg = socket[0].args().as_ref().unwrap()[0];
        assert_eq!((arg.op(), arg.value()), (LinuxSeccompOperator::ScmpCmpNe, 40));
    }

    #[test]
    fn with_sys_admin() {
        let s = docker_default(&caps(&["CAP_SYS_ADMIN"]));
        for name in ["mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf"] {
            assert!(unconditionally_allowed(&s, name), "{name} must be allowed");
        }
        assert_eq!(rules(&s, "clone").len(), 1);
        assert_eq!(rules(&s, "clone3").len(), 1);
    }

    #[test]
    fn other_caps() {
        for (cap, name) in [
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_MODULE", "finit_module"),
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_TIME", "clock_settime"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYS_RAWIO", "ioperm"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
            ("SYS_TTY_CONFIG", "vhangup"),
        ] {
            assert!(!unconditionally_allowed(&docker_default(&caps(&[])), name));
            assert!(unconditionally_allowed(&docker_default(&caps(&[cap])), name), "{cap}");
        }
        // chroot goes away with CAP_SYS_CHROOT
        assert!(rules(&docker_default(&[]), "chroot").is_empty());
    }
}
