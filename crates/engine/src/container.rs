//! Creating a container (Docker's `create`): the record, its network leases, its directory
//! with the generated /etc files and identity, the OCI spec and the typed [`Plan`] — every
//! option checked before anything exists, everything removed again if a later step fails —
//! and the monitor's configuration next to the spec.

use crate::db::{now_rfc3339, ContainerState, NewContainer};
use crate::etc::{write_etc_files, Address, EtcInputs};
use crate::monitor::MonitorConfig;
use crate::plan::Plan;
use crate::reconcile::{remove_container_files, Creating};
use crate::spec::{self, ImageDefaults, NetMode, RunRequest};
use crate::state::Engine;
use crate::storage::Driver;
use crate::{images, userdb, Error, IoContext, Result};
use cove_runtime::Rootfs;
use std::path::PathBuf;

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble",
    "proud", "quiet", "sharp", "swift", "tender", "vivid", "witty", "zen",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "knuth", "lamport", "lovelace", "noether",
    "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yalow", "zuse", "hamilton",
];

fn generated_name(id: &str) -> String {
    let b = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(0);
    format!("{}_{}", ADJECTIVES[(b % 20) as usize], NAMES[((b / 20) % 20) as usize])
}

fn address(e: &crate::network::Endpoint) -> Address {
    Address {
        ip: e.ip,
        ip6: e.ip6.map(|(ip, _, _)| ip),
        aliases: e.aliases.clone(),
        gateway: e.gateway,
        gateway6: e.ip6.map(|(_, _, gw)| gw),
    }
}

/// A prepared (created) container.
pub struct Prepared {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: Rootfs,
    pub userns: Option<cove_runtime::NestedMaps>,
    pub endpoints: Vec<crate::network::Endpoint>,
    /// `container:NAME`: whose network namespace to join, looked up again at every start.
    pub net_from: Option<crate::monitor::NetFrom>,
    /// What was parsed from the request: restart policy, log options, ports, stop signal.
    pub plan: Plan,
    /// Held until the container is complete ([`Creating`]).
    pub creating: Creating,
}

/// Creates the container record, its directory, files and spec (Docker's `create`).
pub fn prepare(eng: &mut Engine, req: &RunRequest) -> Result<Prepared> {
    let img = images::resolve(&eng.db, &req.image)?;
    let cfg: oci_spec::image::ImageConfiguration = serde_json::from_str(&img.config)
        .map_err(|e| Error::Corrupt(format!("image {} has a bad config: {e}", req.image)))?;
    let defaults = ImageDefaults::from_config(&cfg);
    let args = spec::command(req, &defaults)?;
    let mut net = spec::net_mode(req)?;
    // `container:NAME`: it must run; its namespace is joined, its hosts and resolv.conf shared.
    let mut shared_from: Option<PathBuf> = None;
    let mut net_from = None;
    if let NetMode::Container(key, path) = &mut net {
        crate::reconcile::reconcile(eng)?;
        let c = eng.db.find_container(key)?;
        let pid = match (c.state, c.pid) {
            (ContainerState::Running, Some(pid)) => pid,
            _ => {
                return Err(Error::Conflict(format!(
                    "cannot join the network of container {}: it is not running",
                    c.name
                )))
            }
        };
        *path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        shared_from = Some(eng.dirs.container(&c.id));
        net_from = Some(crate::monitor::NetFrom {
            name: c.name.clone(),
            run_dir: eng.dirs.container_run(&c.id).path().to_path_buf(),
        });
    }
    let mut nets = vec![];
    if let NetMode::Bridge(names) = &net {
        for n in names {
            let row = if n == crate::network::DEFAULT_NETWORK {
                crate::network::ensure_default(eng)?
            } else {
                crate::network::find(eng, n)?
            };
            nets.push((row, req.network_aliases.clone()));
        }
    } else if !req.network_aliases.is_empty() {
        return Err(Error::Invalid("--network-alias is only supported for user-defined networks".into()));
    }
    let fixed = crate::network::StaticIp::parse(req.ip.as_deref(), req.ip6.as_deref())?;
    if !fixed.is_empty() && nets.len() != 1 {
        return Err(Error::Invalid("--ip and --ip6 need exactly one network (--network NAME)".into()));
    }
    // A MAC address is the first network's interface's (Docker's rule).
    let fixed = fixed.with_mac(req.mac_address.as_deref())?;
    if fixed.mac.is_some() && nets.is_empty() {
        return Err(Error::Invalid(
            "--mac-address needs a network: not with --network none, host or container:NAME".into(),
        ));
    }
    let names = spec::name_opts(req)?;
    if matches!(net, NetMode::Container(..)) && !names.is_empty() {
        return Err(Error::Invalid("--add-host, --dns, --dns-search and --dns-option cannot be used with --network container:NAME: the container uses NAME's /etc/hosts and resolv.conf".into()));
    }
    // Restart policy, log options, ports and stop signal, parsed once: a bad one fails here,
    // before anything exists.
    let exposed = crate::ports::exposed(&defaults.exposed, &req.expose)?;
    let plan = Plan::parse(req, defaults.stop_signal.as_deref(), &exposed, &net)?;
    // As Docker and podman: host and none have nothing to publish into (a warning, the ports
    // are dropped).
    if plan.ports_discarded {
        let mode = if matches!(net, NetMode::Host) { "host" } else { "none" };
        crate::warn_user(format_args!("published ports are discarded with --network {mode}"));
    }
    let id = cove_oci::new_id()?;
    let name = match &req.name {
        Some(n) => {
            cove_oci::validate_name(n)?;
            n.trim_start_matches('/').to_string()
        }
        // Docker's way: adjective_name, with a number added while that one is taken.
        None => {
            let base = generated_name(&id);
            let mut name = base.clone();
            let mut k = 1;
            while eng.db.container_name_taken(&name)? {
                k += 1;
                name = format!("{base}{k}");
            }
            name
        }
    };
    let user_spec = req.user.clone().or(defaults.user.clone()).unwrap_or_else(|| "0".into());
    let passwd = images::read_image_userdb(&eng.store, &img, "/etc/passwd");
    let group = images::read_image_userdb(&eng.store, &img, "/etc/group");
    let user = userdb::resolve(&user_spec, &passwd, &group)?;
    let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    if let Some(h) = &req.user_home {
        if !h.starts_with('/') || h == "/" {
            return Err(Error::Invalid(format!("invalid --user-home {h:?}: it must be an absolute path other than /")));
        }
    }
    let cwd = req.workdir.clone().or(defaults.workdir.clone()).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!(
            "the working directory {cwd:?} is invalid, it needs to be an absolute path"
        )));
    }
    let user_mounts = spec::user_mounts(req, &eng.dirs.volumes())?;
    spec::resources(req)?;
    let init = match req.init {
        Some(b) => b,
        None => crate::config::load(eng.dirs.rootless)?.init,
    };
    let mut stored = req.clone();
    // The image's StopSignal is kept when it names a signal (the plan says whether it does).
    stored.stop_signal =
        req.stop_signal.clone().or(defaults.stop_signal.clone().filter(|_| plan.stop_signal.is_some()));
    let config = serde_json::to_string(&stored).map_err(|e| Error::Other(e.to_string()))?;
    let image_name = req.image.clone();
    let created = now_rfc3339();
    // Outbound access (and the address of the host's loopback) for networks that are not
    // --internal: say once, here, when there is none.
    let host = if nets.iter().any(|(n, _)| !n.internal) {
        match crate::outbound::choose() {
            Ok(Some(tool)) => crate::outbound::host_address(&tool),
            Ok(None) => None,
            Err(e) => {
                crate::warn_user(format_args!("{e}"));
                None
            }
        }
    } else {
        None
    };
    // `--add-host NAME:host-gateway`: the address that reaches the host from here.
    let gateway = match &net {
        NetMode::Host => Some(std::net::IpAddr::from([127, 0, 0, 1])),
        _ => host,
    };
    let mut extra_hosts = vec![];
    for (h, ip) in &names.hosts {
        let ip = match ip {
            spec::HostIp::Ip(ip) => *ip,
            spec::HostIp::Gateway => gateway.ok_or_else(|| {
                Error::Invalid(format!("--add-host {h}:host-gateway: nothing reaches the host from this container's network (--network none, an --internal network, or no pasta or slirp4netns)"))
            })?,
        };
        extra_hosts.push((h.clone(), ip));
    }
    let row = NewContainer {
        id: &id,
        name: &name,
        image_id: &img.id,
        image: &image_name,
        created: &created,
        config: &config,
    };
    let creating = Creating::begin(&eng.dirs.container_run(&id))?;
    let endpoints = eng
        .db
        .insert_container(&row, |tx| crate::network::lease(tx, &id, &nets, fixed))
        .map_err(|e| match e {
            Error::Db(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                let other = eng.db.find_container(&name).map(|c| c.id).unwrap_or_default();
                Error::Conflict(format!(
                    "the container name \"/{name}\" is already in use by container \"{other}\"; remove (or rename) that container to reuse the name"
                ))
            }
            e => e,
        })
        .inspect_err(|_| {
            creating.done();
            let _ = std::fs::remove_dir_all(eng.dirs.container_run(&id));
        })?;
    cove_sys::fault::point("create.after-insert");
    // From here on, failures remove the record again so nothing is left half-created.
    let dir = eng.dirs.container(&id);
    let result = (|| -> Result<Prepared> {
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let addresses: Vec<Address> = endpoints.iter().map(address).collect();
        let mut etc = write_etc_files(
            &dir,
            &EtcInputs {
                hostname: &hostname,
                name: &name,
                net: &net,
                endpoints: &addresses,
                host,
                extra_hosts: &extra_hosts,
                names: &names,
            },
        )?;
        cove_sys::fault::point("create.after-etc");
        if let Some(other) = &shared_from {
            // The other container's files, as Docker shares them: one network, one view of it.
            for (dst, src) in etc.iter_mut() {
                if dst == "/etc/hosts" || dst == "/etc/resolv.conf" {
                    *src = other.join(dst.trim_start_matches("/etc/"));
                }
            }
        }
        let (um, gm) = (cove_runtime::userns::current_uid_map(), cove_runtime::userns::current_gid_map());
        let maps = eng.dirs.rootless.then_some((&um[..], &gm[..]));
        let ident = crate::identity::build(&dir, user.clone(), &passwd, &group, req.user_home.as_deref(), maps)?;
        etc.extend(ident.mounts.iter().cloned());
        let env = spec::environment(req, &defaults, &hostname, &ident.env)?;
        let rootfs_dir = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs_dir).ctx(|| "create rootfs dir".into())?;
        let rootfs = match eng.driver {
            Driver::Overlay | Driver::FuseOverlay => {
                let upper = dir.join("upper");
                let work = dir.join("work");
                std::fs::create_dir_all(&upper).ctx(|| "create upper dir".into())?;
                std::fs::create_dir_all(&work).ctx(|| "create work dir".into())?;
                let lower: Vec<PathBuf> =
                    img.diff_ids.iter().rev().map(|d| eng.store.layer_dir(d)).collect::<Result<_, _>>()?;
                if lower.is_empty() {
                    return Err(Error::Invalid(format!("image {} has no layers", req.image)));
                }
                if eng.driver == Driver::FuseOverlay {
                    Rootfs::FuseOverlay { lower, upper, work }
                } else {
                    Rootfs::Overlay { lower, upper, work, userxattr: eng.dirs.rootless }
                }
            }
            Driver::Copy => {
                eng.store.flatten_into(&img.diff_ids, &rootfs_dir, &eng.unpack_options())?;
                Rootfs::Directory
            }
        };
        cove_sys::fault::point("create.after-rootfs");
        let spec = spec::build(spec::SpecInputs {
            req,
            args,
            env,
            cwd,
            user: &ident.resolved,
            hostname,
            rootfs: rootfs_dir,
            etc_files: etc,
            rootless: eng.dirs.rootless,
            user_mounts,
            init,
            net: net.clone(),
        })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(dir.join("config.json"), json).ctx(|| "write config.json".into())?;
        cove_sys::fault::point("create.after-config");
        Ok(Prepared {
            id: id.clone(),
            name: name.clone(),
            dir: dir.clone(),
            spec,
            rootfs,
            userns: ident.userns,
            endpoints: endpoints.clone(),
            net_from,
            plan: plan.clone(),
            creating,
        })
    })();
    if result.is_err() {
        let _ = remove_container_files(&dir);
        let _ = std::fs::remove_dir_all(eng.dirs.container_run(&id));
        let _ = eng.db.delete_container(&id, false);
    }
    result
}

/// The monitor's configuration, written next to config.json.
pub(crate) fn write_monitor_config(eng: &Engine, req: &RunRequest, p: &Prepared) -> Result<()> {
    let id = &p.id;
    let cfg = MonitorConfig {
        id: id.to_string(),
        rootfs: p.rootfs.clone(),
        rootless: eng.dirs.rootless,
        tty: req.tty,
        restart: p.plan.restart,
        log_opts: p.plan.log,
        log_path: eng.dirs.container(id).join("container.log"),
        userns: p.userns.clone(),
        user_run_dir: Some(eng.dirs.run.clone()),
        seccomp_dir: Some(eng.dirs.seccomp_cache()),
        endpoints: p.endpoints.clone(),
        ports: p.plan.ports.clone(),
        legacy: Default::default(),
        db: Some(eng.dirs.db_path()),
        net_from: p.net_from.clone(),
        config: crate::config::path(eng.dirs.rootless),
    };
    let json = serde_json::to_vec(&cfg).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(eng.dirs.container(id).join("monitor.json"), json).ctx(|| "write monitor.json".into())
}

/// `cove create`: the container exists, nothing runs.
pub fn create(eng: &mut Engine, req: &RunRequest) -> Result<String> {
    let p = prepare(eng, req)?;
    if let Err(e) = write_monitor_config(eng, req, &p) {
        let _ = crate::reconcile::delete(eng, &p.id, false);
        return Err(e);
    }
    cove_sys::fault::point("create.after-monitor-config");
    p.creating.done();
    Ok(p.id)
}
