//! From a `run` request and an image config to an OCI runtime spec, with Docker's semantics.

use crate::userdb::Resolved;
use crate::{Error, IoContext, Result};
use oci_spec::runtime as rt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use crate::request::{net_mode, parse_size, NetMode, RunRequest};

/// The parts of the image config that shape the process.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub exposed: Vec<String>,
}

impl ImageDefaults {
    pub fn from_config(c: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(cfg) = c.config() else { return Self::default() };
        ImageDefaults {
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            env: cfg.env().clone().unwrap_or_default(),
            workdir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            stop_signal: cfg.stop_signal().clone().filter(|u| !u.is_empty()),
            exposed: cfg.exposed_ports().clone().unwrap_or_default(),
        }
    }
}

/// Docker's rule: `--entrypoint` replaces the image's Entrypoint and drops its Cmd; the
/// command line's arguments replace Cmd.
pub fn command(req: &RunRequest, img: &ImageDefaults) -> Result<Vec<String>> {
    let (entry, cmd) = match &req.entrypoint {
        Some(e) if e.is_empty() => (vec![], req.cmd.clone()),
        Some(e) => (vec![e.clone()], req.cmd.clone()),
        None => (img.entrypoint.clone(), if req.cmd.is_empty() { img.cmd.clone() } else { req.cmd.clone() }),
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::Invalid("no command specified".into()));
    }
    Ok(args)
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or("").to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(kv);
}

/// Parses a Docker env file: `KEY=VALUE`, or `KEY` alone to take the host's value; `#`
/// comments and blank lines are skipped.
pub fn parse_env_file(text: &str, host: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match l.split_once('=') {
            Some((k, _)) if k.is_empty() || k.contains(char::is_whitespace) => {
                return Err(Error::Invalid(format!("env file line {}: invalid variable name {k:?}", n + 1)));
            }
            Some(_) => out.push(l.to_string()),
            None => {
                let k = l.trim_end();
                if k.contains(char::is_whitespace) {
                    return Err(Error::Invalid(format!(
                        "env file line {}: variable {k:?} contains whitespaces",
                        n + 1
                    )));
                }
                if let Some(v) = host(k) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// The container's environment: image Env, then env files, then `-e`, then HOSTNAME, TERM and
/// the identity's defaults (HOME, USER, LOGNAME) unless set, as Docker does.
pub fn environment(req: &RunRequest, img: &ImageDefaults, hostname: &str, identity: &[String]) -> Result<Vec<String>> {
    let host = |k: &str| std::env::var(k).ok();
    let mut env: Vec<String> = vec![];
    for e in &img.env {
        set_env(&mut env, e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    for f in &req.env_files {
        let text = std::fs::read_to_string(f).ctx(|| format!("read env file {}", f.display()))?;
        for kv in parse_env_file(&text, &host)? {
            set_env(&mut env, kv);
        }
    }
    for e in &req.env {
        match e.split_once('=') {
            Some(("", _)) => return Err(Error::Invalid(format!("invalid environment variable: {e}"))),
            Some(_) => set_env(&mut env, e.clone()),
            None => {
                if let Some(v) = host(e) {
                    set_env(&mut env, format!("{e}={v}"));
                }
            }
        }
    }
    let has = |env: &Vec<String>, k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    for kv in identity {
        let k = kv.split('=').next().unwrap_or("");
        if !has(&env, k) {
            env.push(kv.clone());
        }
    }
    if req.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    Ok(env)
}

/// A mount the user asked for, in OCI terms.
fn oci_mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> rt::Mount {
    let mut m = rt::Mount::default();
    m.set_destination(PathBuf::from(dst));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(src)));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

/// `-v SRC:DST[:OPTS]` (SRC a host path or a volume name) and `--mount k=v,...`.
pub fn user_mounts(req: &RunRequest, volumes_dir: &Path) -> Result<Vec<rt::Mount>> {
    let mut out = vec![];
    for v in &req.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [d] => ("", *d, ""),
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => return Err(Error::Invalid(format!("invalid volume specification: {v:?}"))),
        };
        if !dst.starts_with('/') {
            return Err(Error::Invalid(format!(
                "invalid volume specification: {v:?}: destination must be an absolute path"
            )));
        }
        let mut mopts = vec!["rbind"];
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" | "rw" => mopts.push(o),
                "z" | "Z" | "U" => {} // SELinux relabel and chown are no-ops here
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => mopts.push(o),
                "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" => mopts.push(o),
                _ => return Err(Error::Invalid(format!("invalid volume option {o:?} in {v:?}"))),
            }
        }
        let src_path = if src.is_empty() {
            crate::volumes::anonymous(volumes_dir)?
        } else if src.starts_with('/') || src.starts_with('.') {
            let p = PathBuf::from(src);
            // Docker creates a missing bind source directory; so do we. One we may not look
            // at (`/proc/1/root` of another user's process) is an error as it is, not
            // something to create (mkdir then said "File exists").
            if !p.try_exists().ctx(|| format!("bind mount source {src}"))? {
                std::fs::create_dir_all(&p).ctx(|| format!("create bind mount source {src}"))?;
            }
            p
        } else {
            crate::volumes::named(volumes_dir, src)?
        };
        let src_path = src_path.canonicalize().ctx(|| format!("bind mount source {}", src_path.display()))?;
        out.push(oci_mount(dst, "bind", &src_path.to_string_lossy(), &mopts));
    }
    for m in &req.mounts {
        let mut kv: HashMap<String, String> = HashMap::new();
        let mut flags = vec![];
        for part in m.split(',') {
            match part.split_once('=') {
                Some((k, v)) => {
                    kv.insert(k.trim().to_string(), v.trim().to_string());
                }
                None => flags.push(part.trim().to_string()),
            }
        }
        let get = |ks: &[&str]| ks.iter().find_map(|k| kv.get(*k).cloned());
        let typ = get(&["type"]).unwrap_or_else(|| "volume".into());
        let dst = get(&["target", "destination", "dst"])
            .ok_or_else(|| Error::Invalid(format!("invalid mount {m:?}: target is required")))?;
        if !dst.starts_with('/') {
            return Err(Error::Invalid(format!("invalid mount {m:?}: target must be an absolute path")));
        }
        let ro = flags.iter().any(|f| f == "readonly" || f == "ro")
            || matches!(get(&["readonly", "ro"]).as_deref(), Some("true" | "1"));
        match typ.as_str() {
            "bind" | "volume" => {
                let src = get(&["source", "src"]);
                let path = match (typ.as_str(), src) {
                    ("bind", Some(s)) => {
                        PathBuf::from(s).canonicalize().ctx(|| format!("bind source path does not exist: {m:?}"))?
                    }
                    ("bind", None) => return Err(Error::Invalid(format!("invalid mount {m:?}: source is required"))),
                    (_, Some(s)) => crate::volumes::named(volumes_dir, &s)?,
                    (_, None) => crate::volumes::anonymous(volumes_dir)?,
                };
                let mut o = vec!["rbind", if ro { "ro" } else { "rw" }];
                if let Some(p) = get(&["bind-propagation"]) {
                    o.push(match p.as_str() {
                        "private" => "private",
                        "rprivate" => "rprivate",
                        "shared" => "shared",
                        "rshared" => "rshared",
                        "slave" => "slave",
                        "rslave" => "rslave",
                        _ => return Err(Error::Invalid(format!("invalid bind-propagation {p:?}"))),
                    });
                }
                out.push(oci_mount(&dst, "bind", &path.to_string_lossy(), &o));
            }
            "tmpfs" => {
                let mut o = vec!["nosuid".to_string(), "nodev".to_string()];
                if ro {
                    o.push("ro".into());
                }
                if let Some(s) = get(&["tmpfs-size"]) {
                    o.push(format!("size={}", parse_size(&s)?));
                }
                if let Some(md) = get(&["tmpfs-mode"]) {
                    let mode = u32::from_str_radix(&md, 8)
                        .map_err(|_| Error::Invalid(format!("invalid tmpfs-mode {md:?}")))?;
                    o.push(format!("mode={mode:o}"));
                }
                let refs: Vec<&str> = o.iter().map(|s| s.as_str()).collect();
                out.push(oci_mount(&dst, "tmpfs", "tmpfs", &refs));
            }
            other => return Err(Error::Invalid(format!("invalid mount type {other:?}"))),
        }
    }
    for t in &req.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !dst.starts_with('/') {
            return Err(Error::Invalid(format!("invalid tmpfs {t:?}: destination must be an absolute path")));
        }
        // Docker's defaults for --tmpfs: rw,noexec,nosuid,size=65536k.
        let mut o: Vec<&str> = vec!["noexec", "nosuid", "nodev"];
        if !opts.split(',').any(|x| x.starts_with("size=")) {
            o.push("size=65536k");
        }
        o.extend(opts.split(',').filter(|x| !x.is_empty()));
        out.push(oci_mount(dst, "tmpfs", "tmpfs", &o));
    }
    Ok(out)
}

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop`.
pub fn capabilities(req: &RunRequest) -> Result<Vec<String>> {
    let mut caps: Vec<String> = if req.privileged {
        cove_runtime::caps::all_caps()
    } else {
        cove_runtime::caps::DOCKER_DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    for d in &req.cap_drop {
        if d.eq_ignore_ascii_case("all") {
            caps.clear();
        } else {
            let n = cove_runtime::caps::normalize_cap(d)?;
            caps.retain(|c| *c != n);
        }
    }
    for a in &req.cap_add {
        if a.eq_ignore_ascii_case("all") {
            caps = cove_runtime::caps::all_caps();
        } else {
            let n = cove_runtime::caps::normalize_cap(a)?;
            if !caps.contains(&n) {
                caps.push(n);
            }
        }
    }
    caps.sort();
    Ok(caps)
}

fn oci_caps(names: &[String]) -> Result<rt::Capabilities> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<rt::Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| Error::Invalid(format!("unknown capability {n:?}")))
        })
        .collect()
}

/// Parses `--ulimit name=soft[:hard]`.
pub fn rlimit(s: &str) -> Result<rt::PosixRlimit> {
    let (name, vals) =
        s.split_once('=').ok_or_else(|| Error::Invalid(format!("invalid ulimit {s:?}: expected name=soft[:hard]")))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse().map_err(|_| Error::Invalid(format!("invalid ulimit value {v:?} in {s:?}")))
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(Error::Invalid(format!("invalid ulimit {s:?}: soft limit is above hard limit")));
    }
    let typ: rt::PosixRlimitType =
        serde_json::from_value(serde_json::Value::String(format!("RLIMIT_{}", name.to_ascii_uppercase())))
            .map_err(|_| Error::Invalid(format!("invalid ulimit name {name:?}")))?;
    rt::PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| Error::Invalid(format!("invalid ulimit {s:?}: {e}")))
}

/// The address of an `--add-host` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIp {
    Ip(std::net::IpAddr),
    /// `host-gateway`: the address that reaches the host (`host.containers.internal`'s).
    Gateway,
}

/// `--add-host`, `--dns`, `--dns-search` and `--dns-option`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameOpts {
    pub hosts: Vec<(String, HostIp)>,
    pub dns: Vec<std::net::IpAddr>,
    /// `None`: the host's search domains; `Some(empty)`: none (`--dns-search .`).
    pub search: Option<Vec<String>>,
    /// Empty: the host's options.
    pub options: Vec<String>,
}

impl NameOpts {
    pub fn is_empty(&self) -> bool {
        *self == NameOpts::default()
    }
}

/// A name for /etc/hosts or resolv.conf: letters, digits, `-`, `_`, `.`; not starting with `-`.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Checks `--add-host`, `--dns`, `--dns-search`, `--dns-option` as Docker takes them.
pub fn name_opts(req: &RunRequest) -> Result<NameOpts> {
    let mut o = NameOpts::default();
    for h in &req.add_hosts {
        let bad = |why: &str| Error::Invalid(format!("invalid --add-host {h:?}: {why}"));
        // HOST:IP, or HOST=IP (Docker 25); an IPv6 address after ':' keeps its colons.
        let (name, ip) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .ok_or_else(|| bad("expected HOST:IP (IP may be host-gateway)"))?;
        if !plain_name(name) {
            return Err(bad(&format!("{name:?} is not a valid host name")));
        }
        let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
        let ip = match ip {
            "host-gateway" => HostIp::Gateway,
            _ => HostIp::Ip(ip.parse().map_err(|_| bad(&format!("{ip:?} is not an IP address")))?),
        };
        o.hosts.push((name.to_string(), ip));
    }
    for d in &req.dns {
        o.dns.push(d.parse().map_err(|_| Error::Invalid(format!("invalid --dns {d:?}: not an IP address")))?);
    }
    if !req.dns_search.is_empty() {
        let mut search = vec![];
        for d in &req.dns_search {
            if d == "." {
                continue;
            }
            if !plain_name(d.trim_end_matches('.')) {
                return Err(Error::Invalid(format!("invalid --dns-search {d:?}: not a domain name")));
            }
            search.push(d.clone());
        }
        o.search = Some(search);
    }
    for opt in &req.dns_options {
        if opt.is_empty() || opt.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid(format!("invalid --dns-option {opt:?}: one resolv.conf option, e.g. ndots:2")));
        }
        o.options.push(opt.clone());
    }
    Ok(o)
}

/// Inputs to [`build`] that the engine computed.
pub struct SpecInputs<'a> {
    pub req: &'a RunRequest,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: &'a Resolved,
    pub hostname: String,
    pub rootfs: PathBuf,
    /// Files generated for the container: (destination, source).
    pub etc_files: Vec<(String, PathBuf)>,
    pub rootless: bool,
    pub user_mounts: Vec<rt::Mount>,
    /// cove's init as PID 1.
    pub init: bool,
    /// The network mode, resolved (a `container:` mode carries its namespace's path).
    pub net: NetMode,
}

/// Builds the OCI runtime spec.
pub fn build(i: SpecInputs<'_>) -> Result<rt::Spec> {
    let req = i.req;
    let net = i.net.clone();
    let caps = capabilities(req)?;
    let oc = oci_caps(&caps)?;
    let mut lc = rt::LinuxCapabilities::default();
    lc.set_bounding(Some(oc.clone()));
    lc.set_permitted(Some(oc.clone()));
    lc.set_effective(Some(oc.clone()));
    lc.set_inheritable(Some(Default::default()));
    lc.set_ambient(Some(Default::default()));
    if i.user.uid != 0 {
        // Docker: a non-root user starts with empty effective and permitted sets (the
        // bounding set still limits what setuid binaries and file caps may grant).
        lc.set_permitted(Some(Default::default()));
        lc.set_effective(Some(Default::default()));
    }

    let mut user = rt::User::default();
    user.set_uid(i.user.uid);
    user.set_gid(i.user.gid);
    user.set_additional_gids(Some(i.user.additional_gids.clone()));

    let mut rlimits = vec![];
    for u in &req.ulimits {
        rlimits.push(rlimit(u)?);
    }

    let mut nnp = true;
    let mut seccomp_opt: Option<String> = None;
    for o in &req.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => nnp = matches!(v, "" | "true"),
            "seccomp" => seccomp_opt = Some(v.to_string()),
            "label" | "apparmor" => {} // no LSM support here; accepted for compatibility
            _ => return Err(Error::Invalid(format!("invalid --security-opt {o:?}"))),
        }
    }
    let seccomp = if req.privileged && seccomp_opt.is_none() {
        None
    } else {
        cove_seccomp::from_security_opt(seccomp_opt.as_deref(), &caps)
            .map_err(|e| Error::Invalid(format!("seccomp profile: {e}")))?
    };

    let mut process = rt::Process::default();
    process.set_terminal(Some(req.tty));
    process.set_args(Some(i.args));
    process.set_env(Some(i.env));
    process.set_cwd(PathBuf::from(&i.cwd));
    process.set_user(user);
    process.set_capabilities(Some(lc));
    process.set_rlimits(Some(rlimits));
    process.set_no_new_privileges(Some(nnp));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);
    process.set_selinux_label(None);

    let mut mounts = vec![
        oci_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        oci_mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        oci_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        oci_mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        oci_mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]),
        oci_mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", if req.privileged { "rw" } else { "ro" }]),
    ];
    for (dst, src) in &i.etc_files {
        mounts.push(oci_mount(dst, "bind", &src.to_string_lossy(), &["rbind", "rprivate"]));
    }
    mounts.extend(i.user_mounts);

    let mut namespaces = vec![];
    for t in [
        rt::LinuxNamespaceType::Pid,
        rt::LinuxNamespaceType::Ipc,
        rt::LinuxNamespaceType::Uts,
        rt::LinuxNamespaceType::Mount,
        rt::LinuxNamespaceType::Cgroup,
    ] {
        let mut ns = rt::LinuxNamespace::default();
        ns.set_typ(t);
        namespaces.push(ns);
    }
    if net.own_netns() {
        let mut ns = rt::LinuxNamespace::default();
        ns.set_typ(rt::LinuxNamespaceType::Network);
        if let NetMode::Container(_, path) = &net {
            ns.set_path(Some(path.clone()));
        }
        namespaces.push(ns);
    }

    let mut linux = rt::Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_devices(None);
    linux.set_seccomp(seccomp);
    let mut res = resources(req)?;
    if !i.rootless && !req.privileged {
        res.get_or_insert_with(Default::default).set_devices(Some(default_device_rules()));
    }
    linux.set_resources(res);
    if req.privileged {
        linux.set_masked_paths(Some(vec![]));
        linux.set_readonly_paths(Some(vec![]));
    } else {
        linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
        linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    }
    let mut sysctl = HashMap::new();
    for s in &req.sysctls {
        let (k, v) = s.split_once('=').ok_or_else(|| Error::Invalid(format!("invalid sysctl {s:?}")))?;
        if !(k.starts_with("net.")
            || k.starts_with("kernel.msg")
            || k.starts_with("kernel.sem")
            || k.starts_with("kernel.shm")
            || k.starts_with("fs.mqueue."))
        {
            return Err(Error::Invalid(format!("sysctl {k:?} is not namespaced and cannot be set per container")));
        }
        if k.starts_with("net.") && net == NetMode::Host {
            return Err(Error::Invalid(format!("sysctl {k:?} cannot be set with --network host")));
        }
        sysctl.insert(k.to_string(), v.to_string());
    }
    linux.set_sysctl((!sysctl.is_empty()).then_some(sysctl));

    let mut root = rt::Root::default();
    root.set_path(i.rootfs);
    root.set_readonly(Some(req.read_only));

    let mut spec = rt::Spec::default();
    spec.set_hostname(Some(i.hostname));
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    let mut ann = HashMap::new();
    if i.init {
        ann.insert(cove_runtime::INIT_ANNOTATION.to_string(), "true".to_string());
    }
    spec.set_annotations((!ann.is_empty()).then_some(ann));
    Ok(spec)
}

/// The device rules of a container run by root without `--privileged` (Docker's and runc's
/// defaults): every device denied, then mknod of any, and read/write of the nodes cove puts in
/// /dev (null, zero, full, random, urandom, tty, console, ptmx, the pts, tun). Without them a
/// node from an image layer, or one the container makes with CAP_MKNOD, opened the host's
/// device (a block device of a disk). Rootless needs none: a user namespace's mounts are nodev.
pub fn default_device_rules() -> Vec<rt::LinuxDeviceCgroup> {
    let rule = |allow: bool, typ: Option<rt::LinuxDeviceType>, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = rt::LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let c = Some(rt::LinuxDeviceType::C);
    let mut rules = vec![
        rule(false, None, None, None, "rwm"),
        rule(true, c, None, None, "m"),
        rule(true, Some(rt::LinuxDeviceType::B), None, None, "m"),
    ];
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        rules.push(rule(true, c, Some(major), minor, "rwm"));
    }
    rules
}

/// `--memory`, `--cpus`, `--pids-limit` as OCI resources.
pub fn resources(req: &RunRequest) -> Result<Option<rt::LinuxResources>> {
    let mut r = rt::LinuxResources::default();
    let mut any = false;
    if req.memory.is_some() || req.memory_swap.is_some() {
        let mut m = rt::LinuxMemory::default();
        if let Some(s) = &req.memory {
            let v = parse_size(s)?;
            if v < 6 * 1024 * 1024 {
                return Err(Error::Invalid("minimum memory limit allowed is 6MB".into()));
            }
            m.set_limit(Some(v));
        }
        if let Some(s) = &req.memory_swap {
            m.set_swap(Some(if s == "-1" { -1 } else { parse_size(s)? }));
        }
        r.set_memory(Some(m));
        any = true;
    }
    if let Some(c) = &req.cpus {
        let v: f64 = c.parse().map_err(|_| Error::Invalid(format!("invalid --cpus {c:?}")))?;
        if v.is_nan() || v <= 0.0 || !v.is_finite() {
            return Err(Error::Invalid(format!("invalid --cpus {c:?}: must be a positive number")));
        }
        let mut cpu = rt::LinuxCpu::default();
        cpu.set_period(Some(100_000));
        cpu.set_quota(Some((v * 100_000.0).round() as i64));
        r.set_cpu(Some(cpu));
        any = true;
    }
    if let Some(p) = req.pids_limit {
        let mut pids = rt::LinuxPids::default();
        pids.set_limit(if p <= 0 { -1 } else { p });
        r.set_pids(Some(pids));
        any = true;
    }
    r.set_devices(None);
    Ok(any.then_some(r))
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_opts_parse_as_docker_takes_them() {
        let req = |hosts: &[&str], dns: &[&str], search: &[&str], opts: &[&str]| RunRequest {
            add_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
            dns_search: search.iter().map(|s| s.to_string()).collect(),
            dns_options: opts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let o = name_opts(&req(
            &["db:10.0.0.5", "v6:fd00::1", "br=[fd00::2]", "gw:host-gateway"],
            &["192.0.2.53", "2001:db8::53"],
            &["a.example", "b.example."],
            &["ndots:2"],
        ))
        .unwrap();
        assert_eq!(
            o.hosts,
            [
                ("db".to_string(), HostIp::Ip("10.0.0.5".parse().unwrap())),
                ("v6".to_string(), HostIp::Ip("fd00::1".parse().unwrap())),
                ("br".to_string(), HostIp::Ip("fd00::2".parse().unwrap())),
                ("gw".to_string(), HostIp::Gateway),
            ]
        );
        assert_eq!(o.dns.len(), 2);
        assert_eq!(o.search, Some(vec!["a.example".to_string(), "b.example.".to_string()]));
        assert_eq!(o.options, ["ndots:2"]);
        assert_eq!(name_opts(&req(&[], &[], &["."], &[])).unwrap().search, Some(vec![]));
        assert!(name_opts(&RunRequest::default()).unwrap().is_empty());
        for (bad, want) in [
            (req(&["nocolon"], &[], &[], &[]), "expected HOST:IP"),
            (req(&["db:10.0.0"], &[], &[], &[]), "not an IP address"),
            (req(&["bad name:10.0.0.1"], &[], &[], &[]), "not a valid host name"),
            (req(&[":10.0.0.1"], &[], &[], &[]), "not a valid host name"),
            (req(&[], &["8.8.8"], &[], &[]), "invalid --dns"),
            (req(&[], &[], &["a b"], &[]), "invalid --dns-search"),
            (req(&[], &[], &[], &["nd ots"]), "invalid --dns-option"),
            (req(&[], &[], &[], &[""]), "invalid --dns-option"),
        ] {
            let e = name_opts(&bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    use super::*;

    fn img(ep: &[&str], cmd: &[&str]) -> ImageDefaults {
        ImageDefaults {
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn docker_command_rules() {
        let mut r = RunRequest::default();
        assert_eq!(command(&r, &img(&["/ep"], &["a"])).unwrap(), ["/ep", "a"]);
        r.cmd = vec!["b".into()];
        assert_eq!(command(&r, &img(&["/ep"], &["a"])).unwrap(), ["/ep", "b"]);
        r.entrypoint = Some("/sh".into());
        assert_eq!(command(&r, &img(&["/ep"], &["a"])).unwrap(), ["/sh", "b"]);
        r.cmd.clear();
        assert_eq!(command(&r, &img(&["/ep"], &["a"])).unwrap(), ["/sh"]);
        r.entrypoint = Some(String::new());
        assert!(command(&r, &img(&["/ep"], &[])).is_err());
        assert!(command(&RunRequest::default(), &img(&[], &[])).is_err());
    }

    #[test]
    fn env_rules() {
        let r = RunRequest {
            env: vec!["A=1".into(), "B=2".into(), "A=3".into(), "COVE_SURELY_UNSET_VAR".into()],
            tty: true,
            ..Default::default()
        };
        let i = ImageDefaults { env: vec!["B=img".into(), "C=img".into()], ..Default::default() };
        let env = environment(&r, &i, "h1", &["HOME=/root".to_string()]).unwrap();
        assert!(env.contains(&"A=3".to_string()) && !env.contains(&"A=1".to_string()));
        assert!(env.contains(&"B=2".to_string()) && env.contains(&"C=img".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(
            env.contains(&"HOSTNAME=h1".to_string())
                && env.contains(&"HOME=/root".to_string())
                && env.contains(&"TERM=xterm".to_string())
        );
        assert!(!env.iter().any(|e| e.starts_with("COVE_SURELY_UNSET_VAR")));
        let f = parse_env_file("# c\n\nX=1\nY= spaced \nHOSTVAR\n", &|k| (k == "HOSTVAR").then(|| "h".to_string()))
            .unwrap();
        assert_eq!(f, ["X=1", "Y= spaced ", "HOSTVAR=h"]);
        assert!(parse_env_file("BAD KEY=1\n", &|_| None).is_err());
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-5m").is_err());
        let r = rlimit("nofile=1024:2048").unwrap();
        assert_eq!((r.soft(), r.hard()), (1024, 2048));
        assert!(rlimit("nofile=10:5").is_err());
        assert!(rlimit("bogus=1").is_err());
        let req = RunRequest {
            memory: Some("64m".into()),
            cpus: Some("0.5".into()),
            pids_limit: Some(100),
            ..Default::default()
        };
        let res = resources(&req).unwrap().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert!(resources(&RunRequest { cpus: Some("-1".into()), ..Default::default() }).is_err());
    }

    #[test]
    fn caps_rules() {
        let r =
            RunRequest { cap_add: vec!["sys_admin".into()], cap_drop: vec!["NET_RAW".into()], ..Default::default() };
        let c = capabilities(&r).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()) && !c.contains(&"CAP_NET_RAW".to_string()));
        let r = RunRequest { cap_drop: vec!["all".into()], cap_add: vec!["chown".into()], ..Default::default() };
        assert_eq!(capabilities(&r).unwrap(), ["CAP_CHOWN"]);
        assert!(capabilities(&RunRequest { cap_add: vec!["bogus".into()], ..Default::default() }).is_err());
    }

    #[test]
    fn mounts_parse() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let r = RunRequest {
            volumes: vec![format!("{}:/data:ro", src.display())],
            tmpfs: vec!["/run:size=1m".into()],
            mounts: vec![
                format!("type=bind,source={},target=/b,readonly", src.display()),
                "type=tmpfs,target=/t,tmpfs-size=1m".into(),
            ],
            ..Default::default()
        };
        let m = user_mounts(&r, &d.path().join("vols")).unwrap();
        assert_eq!(m.len(), 4);
        assert!(m[0].options().as_ref().unwrap().contains(&"ro".to_string()));
        for bad in ["bad/name:/x", "/a:rel", "/a:/b:bogus", "/a:/b:c:d"] {
            let r = RunRequest { volumes: vec![bad.into()], ..Default::default() };
            assert!(user_mounts(&r, d.path()).is_err(), "{bad}");
        }
    }
}
