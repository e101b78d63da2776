//! L0: compile profiles to BPF and run the program in a small classic-BPF interpreter
//! against synthetic `seccomp_data`. Needs no privileges and loads nothing.

use cove_seccomp::{compile_bpf, docker_default, parse_profile, Error, BPF_INSTRUCTION_LEN};
use libseccomp::{ScmpArch, ScmpSyscall};

// --- a classic BPF interpreter, enough for what libseccomp emits ---------------------------

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Allow,
    Errno(u16),
    KillThread,
    KillProcess,
    Trap,
    Trace(u16),
    Log,
}

fn verdict(ret: u32) -> Verdict {
    match ret & 0xffff_0000 {
        RET_ALLOW => Verdict::Allow,
        RET_ERRNO => Verdict::Errno(ret as u16),
        RET_KILL_THREAD => Verdict::KillThread,
        RET_KILL_PROCESS => Verdict::KillProcess,
        RET_TRAP => Verdict::Trap,
        RET_TRACE => Verdict::Trace(ret as u16),
        RET_LOG => Verdict::Log,
        other => panic!("unexpected seccomp return {other:#x}"),
    }
}

/// `struct seccomp_data` in native byte order.
fn seccomp_data(arch: u32, nr: i32, args: [u64; 6]) -> Vec<u8> {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes()); // instruction_pointer
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    data
}

fn run_bpf(prog: &[u8], data: &[u8]) -> u32 {
    assert_eq!(prog.len() % BPF_INSTRUCTION_LEN, 0);
    let insns: Vec<(u16, u8, u8, u32)> = prog
        .chunks_exact(8)
        .map(|c| (u16::from_ne_bytes([c[0], c[1]]), c[2], c[3], u32::from_ne_bytes([c[4], c[5], c[6], c[7]])))
        .collect();
    let load = |off: u32| -> u32 {
        let off = off as usize;
        u32::from_ne_bytes(data[off..off + 4].try_into().unwrap())
    };
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let (code, jt, jf, k) = insns[pc];
        pc += 1;
        let src = if code & 0x08 != 0 { x } else { k };
        match code & 0x07 {
            0x00 => {
                // LD
                a = match code & 0xe0 {
                    0x00 => k,
                    0x20 => load(k),
                    0x40 => load(x.wrapping_add(k)),
                    0x60 => mem[k as usize],
                    0x80 => data.len() as u32,
                    m => panic!("ld mode {m:#x}"),
                }
            }
            0x01 => {
                // LDX
                x = match code & 0xe0 {
                    0x00 => k,
                    0x60 => mem[k as usize],
                    0x80 => data.len() as u32,
                    m => panic!("ldx mode {m:#x}"),
                }
            }
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x04 => {
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a << src,
                    0x70 => a >> src,
                    0x80 => a.wrapping_neg(),
                    0x90 => a % src,
                    0xa0 => a ^ src,
                    op => panic!("alu op {op:#x}"),
                }
            }
            0x05 => {
                let taken = match code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    op => panic!("jmp op {op:#x}"),
                };
                pc += if taken { jt } else { jf } as usize;
            }
            0x06 => {
                return match code & 0x18 {
                    0x00 => k,
                    0x10 => a,
                    0x08 => x,
                    r => panic!("ret {r:#x}"),
                }
            }
            _ => {
                if code & 0xf8 == 0x80 {
                    a = x; // TXA
                } else {
                    x = a; // TAX
                }
            }
        }
    }
}

// --- helpers ---------------------------------------------------------------------------------

/// `AUDIT_ARCH_*` of the host, for the architectures these tests know.
fn native_audit_arch() -> Option<u32> {
    match std::env::consts::ARCH {
        "x86_64" => Some(0xc000_003e),
        "aarch64" => Some(0xc000_00b7),
        _ => None,
    }
}

struct Filter {
    bpf: Vec<u8>,
    arch: u32,
}

impl Filter {
    /// `None` (and a SKIP line) on hosts the interpreter tests do not know.
    fn new(seccomp: &cove_seccomp::LinuxSeccomp) -> Option<Self> {
        let bpf = compile_bpf(seccomp).expect("compile");
        let Some(arch) = native_audit_arch() else {
            println!("SKIP: no AUDIT_ARCH value for {} in the test", std::env::consts::ARCH);
            return None;
        };
        Some(Self { bpf, arch })
    }

    fn check(&self, name: &str, args: &[u64]) -> Verdict {
        let nr = ScmpSyscall::from_name(name).expect(name).as_raw_syscall();
        self.check_arch(self.arch, nr, args)
    }

    fn check_arch(&self, arch: u32, nr: i32, args: &[u64]) -> Verdict {
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        verdict(run_bpf(&self.bpf, &seccomp_data(arch, nr, all)))
    }
}

fn caps(extra: &[&str]) -> Vec<String> {
    cove_seccomp::DOCKER_DEFAULT_CAPS.iter().chain(extra).map(|c| c.to_string()).collect()
}

const EPERM: Verdict = Verdict::Errno(libc::EPERM as u16);
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
const SIGCHLD: u64 = libc::SIGCHLD as u64;

// --- Docker's default profile --------------------------------------------------------------

#[test]
fn default_profile_compiles() {
    let bpf = compile_bpf(&docker_default(&caps(&[]))).unwrap();
    assert!(!bpf.is_empty());
    assert_eq!(bpf.len() % BPF_INSTRUCTION_LEN, 0);
    let admin = compile_bpf(&docker_default(&caps(&["CAP_SYS_ADMIN"]))).unwrap();
    println!(
        "default profile: {} BPF instructions ({} with CAP_SYS_ADMIN)",
        bpf.len() / BPF_INSTRUCTION_LEN,
        admin.len() / BPF_INSTRUCTION_LEN
    );
}

#[test]
fn default_profile_without_sys_admin() {
    let Some(f) = Filter::new(&docker_default(&caps(&[]))) else {
        return;
    };
    for name in ["getpid", "read", "write", "execve", "exit_group", "futex", "chroot", "ptrace"] {
        assert_eq!(f.check(name, &[]), Verdict::Allow, "{name}");
    }
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "bpf",
        "reboot",
        "init_module",
        "keyctl",
        "add_key",
        "io_uring_setup",
        "clock_settime",
        "kexec_load",
        "pivot_root",
        "swapon",
        "userfaultfd",
        "kcmp",
        "acct",
        "open_by_handle_at",
    ] {
        assert_eq!(f.check(name, &[]), EPERM, "{name}");
    }
    assert_eq!(f.check("unshare", &[CLONE_NEWUSER]), EPERM);
    // clone: only without namespace flags
    assert_eq!(f.check("clone", &[SIGCHLD]), Verdict::Allow);
    assert_eq!(f.check("clone", &[0x003d_0f00]), Verdict::Allow); // pthread_create's flags
    assert_eq!(f.check("clone", &[CLONE_NEWUSER | SIGCHLD]), EPERM);
    assert_eq!(f.check("clone", &[libc::CLONE_NEWNS as u64]), EPERM);
    assert_eq!(f.check("clone", &[libc::CLONE_NEWNET as u64]), EPERM);
    // namespace bits live in the low 32 bits; the high half is ignored by the kernel
    assert_eq!(f.check("clone", &[(1 << 40) | SIGCHLD]), Verdict::Allow);
    // clone3: ENOSYS so that libc falls back to clone
    assert_eq!(f.check("clone3", &[]), Verdict::Errno(libc::ENOSYS as u16));
    // personality
    for ok in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(f.check("personality", &[ok]), Verdict::Allow, "{ok:#x}");
    }
    for bad in [0x40_0000 /* READ_IMPLIES_EXEC */, 0x4_0000 /* ADDR_NO_RANDOMIZE */, 0x9] {
        assert_eq!(f.check("personality", &[bad]), EPERM, "{bad:#x}");
    }
    // socket: all but AF_VSOCK
    assert_eq!(f.check("socket", &[libc::AF_INET as u64]), Verdict::Allow);
    assert_eq!(f.check("socket", &[libc::AF_UNIX as u64]), Verdict::Allow);
    assert_eq!(f.check("socket", &[libc::AF_VSOCK as u64]), EPERM);
}

#[test]
fn default_profile_with_sys_admin() {
    let Some(f) = Filter::new(&docker_default(&caps(&["CAP_SYS_ADMIN"]))) else {
        return;
    };
    for name in ["mount", "umount2", "unshare", "setns", "clone3", "sethostname"] {
        assert_eq!(f.check(name, &[]), Verdict::Allow, "{name}");
    }
    assert_eq!(f.check("unshare", &[CLONE_NEWUSER]), Verdict::Allow);
    assert_eq!(f.check("clone", &[CLONE_NEWUSER | SIGCHLD]), Verdict::Allow);
    assert_eq!(f.check("reboot", &[]), EPERM);
}

#[test]
fn default_profile_other_abis() {
    let Some(f) = Filter::new(&docker_default(&caps(&[]))) else {
        return;
    };
    if std::env::consts::ARCH != "x86_64" {
        println!("SKIP: sub-architecture checks are written for x86_64");
        return;
    }
    // i386 ABI (int 0x80): AUDIT_ARCH_I386
    let x86 = 0x4000_0003;
    let nr = |name| ScmpSyscall::from_name_by_arch(name, ScmpArch::X86).unwrap().as_raw_syscall();
    assert_eq!(f.check_arch(x86, nr("getpid"), &[]), Verdict::Allow);
    assert_eq!(f.check_arch(x86, nr("socketcall"), &[]), Verdict::Allow);
    assert_eq!(f.check_arch(x86, nr("mount"), &[]), EPERM);
    // x32 ABI: AUDIT_ARCH_X86_64 with __X32_SYSCALL_BIT
    let nr = ScmpSyscall::from_name_by_arch("getpid", ScmpArch::X32).unwrap().as_raw_syscall();
    assert!(nr & 0x4000_0000 != 0);
    assert_eq!(f.check_arch(f.arch, nr, &[]), Verdict::Allow);
    // an ABI the filter does not know: killed
    assert_eq!(f.check_arch(0xc000_00b7, 39, &[]), Verdict::KillThread);
}

// --- user profiles -------------------------------------------------------------------------

#[test]
fn every_action_and_operator() {
    let json = br#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_KILL"},
            {"names": ["gettid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
            {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getegid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["no_such_syscall", "sync"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
            {"names": ["dup"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_NE"}]},
            {"names": ["dup2"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_LT"}]},
            {"names": ["dup3"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_LE"}]},
            {"names": ["close"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fsync"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GE"}]},
            {"names": ["fdatasync"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GT"}]},
            {"names": ["umask"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 18, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["tkill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;
    let Some(f) = Filter::new(&parse_profile(json, &[]).unwrap()) else {
        return;
    };
    assert_eq!(f.check("getppid", &[]), Verdict::KillThread);
    assert_eq!(f.check("gettid", &[]), Verdict::KillThread);
    assert_eq!(f.check("getpgrp", &[]), Verdict::KillProcess);
    assert_eq!(f.check("getuid", &[]), Verdict::Trap);
    assert_eq!(f.check("getgid", &[]), Verdict::Errno(95));
    assert_eq!(f.check("geteuid", &[]), EPERM, "ERRNO without errnoRet is EPERM");
    assert_eq!(f.check("getegid", &[]), Verdict::Trace(7));
    assert_eq!(f.check("getpid", &[]), Verdict::Log);
    assert_eq!(f.check("sync", &[]), Verdict::Errno(5), "unknown names are skipped");
    assert_eq!(f.check("read", &[]), Verdict::Allow);

    let e = Verdict::Errno(1);
    let a = Verdict::Allow;
    assert_eq!((f.check("dup", &[10]), f.check("dup", &[11])), (a, e));
    assert_eq!((f.check("dup2", &[0, 9]), f.check("dup2", &[0, 10])), (e, a));
    assert_eq!((f.check("dup3", &[0, 10]), f.check("dup3", &[0, 11])), (e, a));
    assert_eq!((f.check("close", &[10]), f.check("close", &[11])), (e, a));
    assert_eq!((f.check("fsync", &[10]), f.check("fsync", &[9])), (e, a));
    assert_eq!((f.check("fdatasync", &[11]), f.check("fdatasync", &[10])), (e, a));
    // (arg & 0o22) == 0o2
    assert_eq!((f.check("umask", &[0o2]), f.check("umask", &[0o22])), (e, a));
    assert_eq!(f.check("umask", &[0o7]), e);
    // different arguments: AND
    assert_eq!(f.check("kill", &[1, 9]), e);
    assert_eq!((f.check("kill", &[1, 15]), f.check("kill", &[2, 9])), (a, a));
    // the same argument twice: OR
    assert_eq!((f.check("tkill", &[0, 9]), f.check("tkill", &[0, 15])), (e, e));
    assert_eq!(f.check("tkill", &[0, 2]), a);
}

#[test]
fn default_errno_ret() {
    let json = br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#;
    // the getppid rule equals the default action: skipped rather than refused by libseccomp
    let Some(f) = Filter::new(&parse_profile(json, &[]).unwrap()) else {
        return;
    };
    assert_eq!(f.check("getpid", &[]), Verdict::Allow);
    assert_eq!(f.check("getppid", &[]), Verdict::Errno(38));
    assert_eq!(f.check("mount", &[]), Verdict::Errno(38));

    let json = br#"{"defaultAction": "SCMP_ACT_ERRNO"}"#;
    let Some(f) = Filter::new(&parse_profile(json, &[]).unwrap()) else {
        return;
    };
    assert_eq!(f.check("getpid", &[]), EPERM);
}

#[test]
fn foreign_arch_names_and_architectures() {
    // s390-only syscalls in a profile compiled on another host, and several architectures
    let json = br#"{"defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{"names": ["s390_runtime_instr", "cacheflush", "arch_prctl", "getpid"],
                      "action": "SCMP_ACT_ALLOW"}]}"#;
    let bpf = compile_bpf(&parse_profile(json, &[]).unwrap()).unwrap();
    assert!(!bpf.is_empty());
}

#[test]
fn compile_errors() {
    let notify = br#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}"#;
    let err = compile_bpf(&parse_profile(notify, &[]).unwrap()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_eq!(err.to_string(), "unsupported seccomp feature: SCMP_ACT_NOTIFY for syscalls [\"getpid\"]");

    let errno_on_allow = br#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#;
    let err = compile_bpf(&parse_profile(errno_on_allow, &[]).unwrap()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");

    let big = br#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#;
    let err = compile_bpf(&parse_profile(big, &[]).unwrap()).unwrap_err();
    assert!(err.to_string().contains("70000"), "{err}");
}

#[test]
fn oci_json_from_the_runtime_spec_compiles() {
    // what `linux.seccomp` of a config.json looks like, serialized by oci-spec itself
    let spec = docker_default(&caps(&[]));
    let json = serde_json::to_vec(&spec).unwrap();
    let reparsed = parse_profile(&json, &[]).unwrap();
    assert_eq!(reparsed, spec);
    assert_eq!(compile_bpf(&reparsed).unwrap(), compile_bpf(&spec).unwrap());
}
