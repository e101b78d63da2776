//! `cove run` (foreground): create the container record and files, build the spec, hand it to
//! the runtime, relay I/O until PID 1 exits, record the exit, clean up with `--rm`.

use crate::db::{now_rfc3339, Db};
use crate::info::Driver;
use crate::spec::{self, ImageDefaults, NetMode, RunRequest};
use crate::{images, userdb, Dirs, Error, IoContext, Result};
use cove_image::Store;
use cove_runtime::{CreateOptions, Rootfs, Stdio};
use rusqlite::params;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An open engine: directories, database, image store and the storage driver in use.
pub struct Engine {
    pub dirs: Dirs,
    pub db: Db,
    pub store: Store,
    pub driver: Driver,
}

impl Engine {
    /// Opens state. Rootless callers must already be inside the user namespace.
    pub fn open(dirs: Dirs) -> Result<Engine> {
        let db = Db::open(&dirs.db_path())?;
        let store = Store::open(&dirs.storage())?;
        let driver = crate::info::storage_driver(&dirs);
        std::fs::create_dir_all(dirs.containers()).ctx(|| "create containers dir".into())?;
        Ok(Engine { dirs, db, store, driver })
    }

    pub fn unpack_options(&self) -> cove_image::UnpackOptions {
        crate::info::unpack_options(&self.dirs)
    }
}

const ADJECTIVES: &[&str] = &["brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet", "sharp", "swift", "tender", "vivid", "witty", "zen"];
const NAMES: &[&str] = &["babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "knuth", "lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yalow", "zuse", "hamilton"];

fn generated_name(id: &str) -> String {
    let b = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(0);
    format!("{}_{}", ADJECTIVES[(b % 20) as usize], NAMES[((b / 20) % 20) as usize])
}

/// Files cove generates for every container and bind-mounts over the image's.
fn write_etc_files(dir: &Path, hostname: &str, name: &str, net: &NetMode, endpoints: &[crate::network::Endpoint]) -> Result<Vec<(String, PathBuf)>> {
    let hostname_file = dir.join("hostname");
    std::fs::write(&hostname_file, format!("{hostname}\n")).ctx(|| "write hostname".into())?;
    let hosts = match net {
        NetMode::Host => {
            let mut h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            h.push_str(&format!("127.0.1.1\t{hostname}\n"));
            h
        }
        NetMode::None => format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        NetMode::Bridge(_) => {
            let mut h = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
            for ep in endpoints {
                let mut names = vec![hostname.to_string()];
                if name != hostname {
                    names.push(name.to_string());
                }
                names.extend(ep.aliases.iter().cloned());
                h.push_str(&format!("{}\t{}\n", ep.ip, names.join(" ")));
            }
            h
        }
    };
    std::fs::write(dir.join("hosts"), hosts).ctx(|| "write hosts".into())?;
    // The host's resolver configuration, as Docker copies it.
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(dir.join("resolv.conf"), resolv).ctx(|| "write resolv.conf".into())?;
    Ok(vec![
        ("/etc/hostname".into(), hostname_file),
        ("/etc/hosts".into(), dir.join("hosts")),
        ("/etc/resolv.conf".into(), dir.join("resolv.conf")),
    ])
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
    /// Image ExposedPorts (for -P).
    pub exposed: Vec<String>,
}

/// Creates the container record, its directory, files and spec (Docker's `create`).
pub fn prepare(eng: &mut Engine, req: &RunRequest) -> Result<Prepared> {
    let img = images::resolve(&eng.db, &req.image)?;
    let cfg: oci_spec::image::ImageConfiguration =
        serde_json::from_str(&img.config).map_err(|e| Error::Other(format!("image {} has a bad config: {e}", req.image)))?;
    let defaults = ImageDefaults::from_config(&cfg);
    let args = spec::command(req, &defaults)?;
    let net = spec::net_mode(req)?;
    let mut nets = vec![];
    if let NetMode::Bridge(names) = &net {
        for n in names {
            let row = if n == crate::network::DEFAULT_NETWORK { crate::network::ensure_default(eng)? } else { crate::network::find(eng, n)? };
            nets.push((row, req.network_aliases.clone()));
        }
    } else if !req.network_aliases.is_empty() {
        return Err(Error::Invalid("--network-alias is only supported for user-defined networks".into()));
    }
    // Bad or privileged port specs fail here, before anything exists.
    let port_specs = crate::ports::specs(&req.publish, req.publish_all, &defaults.exposed)?;
    if !port_specs.is_empty() && !matches!(net, NetMode::Bridge(_)) {
        return Err(Error::Invalid("published ports need a network: not with --network none or host".into()));
    }
    let id = cove_oci::new_id()?;
    let name = match &req.name {
        Some(n) => {
            cove_oci::validate_name(n)?;
            n.trim_start_matches('/').to_string()
        }
        None => generated_name(&id),
    };
    let user_spec = req.user.clone().or(defaults.user.clone()).unwrap_or_else(|| "0".into());
    let passwd = images::read_image_file(&eng.store, &img, "/etc/passwd").unwrap_or_default();
    let group = images::read_image_file(&eng.store, &img, "/etc/group").unwrap_or_default();
    let user = userdb::resolve(&user_spec, &passwd, &group)?;
    let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    if let Some(h) = &req.user_home {
        if !h.starts_with('/') || h == "/" {
            return Err(Error::Invalid(format!("invalid --user-home {h:?}: it must be an absolute path other than /")));
        }
    }
    let cwd = req.workdir.clone().or(defaults.workdir.clone()).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!("the working directory {cwd:?} is invalid, it needs to be an absolute path")));
    }
    let user_mounts = spec::user_mounts(req, &eng.dirs.volumes())?;
    spec::resources(req)?;
    let init = match req.init {
        Some(b) => b,
        None => crate::config::load(eng.dirs.rootless)?.init,
    };

    let mut stored = req.clone();
    stored.stop_signal = req.stop_signal.clone().or(defaults.stop_signal.clone());
    if let Some(r) = &req.restart {
        crate::monitor::Restart::parse(r)?;
    }
    crate::logs::LogOpts::parse(&req.log_opts)?;
    let config = serde_json::to_string(&stored).map_err(|e| Error::Other(e.to_string()))?;
    let image_name = req.image.clone();
    let created = now_rfc3339();
    let endpoints = eng
        .db
        .write(|tx| {
            tx.execute(
                "INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created')",
                params![id, name, img.id, image_name, created, config],
            )?;
            crate::network::lease(tx, &id, &nets)
        })
        .map_err(|e| match e {
            Error::Db(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                let other = eng.db.find_container(&name).map(|c| c.id).unwrap_or_default();
                Error::Conflict(format!(
                    "the container name \"/{name}\" is already in use by container \"{other}\"; remove (or rename) that container to reuse the name"
                ))
            }
            e => e,
        })?;
    // From here on, failures remove the record again so nothing is left half-created.
    let dir = eng.dirs.container(&id);
    let result = (|| -> Result<Prepared> {
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let mut etc = write_etc_files(&dir, &hostname, &name, &net, &endpoints)?;
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
                let lower: Vec<PathBuf> = img.diff_ids.iter().rev().map(|d| eng.store.layer_dir(d)).collect::<Result<_, _>>()?;
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
        })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(dir.join("config.json"), json).ctx(|| "write config.json".into())?;
        Ok(Prepared { id: id.clone(), name: name.clone(), dir: dir.clone(), spec, rootfs, userns: ident.userns, endpoints: endpoints.clone(), exposed: defaults.exposed.clone() })
    })();
    if result.is_err() {
        let _ = remove_container_files(&dir);
        let _ = eng.db.write(|tx| {
            crate::network::release(tx, &id)?;
            tx.execute("DELETE FROM containers WHERE id = ?1", [&id])?;
            Ok(())
        });
    }
    result
}

/// Removes a container's directory (upper layer, generated files).
pub fn remove_container_files(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { what: format!("remove {}", dir.display()), source: e }),
    }
}

/// Sets up cgroups for the spec's resources, warning (not failing) where the host cannot
/// apply them.
pub fn cgroup_for_limits(id: &str, spec: &oci_spec::runtime::Spec, rootless: bool) -> Option<cove_cgroups::Cgroup> {
    let limits = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).map(cove_cgroups::Limits::from_oci).unwrap_or_default();
    if limits.is_empty() {
        return None;
    }
    let support = cove_cgroups::detect(rootless);
    if let Some(w) = support.unmet(&limits) {
        eprintln!("cove: warning: {w}; the container runs without these limits");
    }
    if !support.usable {
        return None;
    }
    match cove_cgroups::Cgroup::create(id, &limits, &support) {
        Ok(cg) => {
            for w in cg.warnings() {
                eprintln!("cove: warning: {w}");
            }
            Some(cg)
        }
        Err(e) => {
            eprintln!("cove: warning: resource limits not applied: {e}");
            None
        }
    }
}

/// `cove run` in the foreground. Returns the container's exit code.
pub fn run(eng: &mut Engine, req: &RunRequest) -> Result<i32> {
    let p = prepare(eng, req)?;
    tracing::debug!("prepared");
    let result = run_prepared(eng, &p, req);
    tracing::debug!("container exited");
    let code = match &result {
        Ok(c) => Some(*c as i64),
        Err(e) => Some(e.exit_code() as i64),
    };
    let _ = std::fs::remove_dir_all(eng.dirs.container_run(&p.id));
    if req.rm {
        let _ = remove_container_files(&p.dir);
        let _ = eng.db.write(|tx| {
            crate::network::release(tx, &p.id)?;
            tx.execute("DELETE FROM containers WHERE id = ?1", [&p.id])?;
            Ok(())
        });
    } else {
        let _ = eng.db.set_container_state(&p.id, "exited", None, code);
    }
    tracing::debug!("cleaned up");
    result
}

fn run_prepared(eng: &mut Engine, p: &Prepared, req: &RunRequest) -> Result<i32> {
    let stdio = if req.tty {
        Stdio::Pty
    } else {
        let stdin: OwnedFd = if req.interactive {
            cove_sys::borrow_raw(0).try_clone_to_owned().ctx(|| "dup stdin".into())?
        } else {
            std::fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?.into()
        };
        let out = cove_sys::borrow_raw(1).try_clone_to_owned().ctx(|| "dup stdout".into())?;
        let err = cove_sys::borrow_raw(2).try_clone_to_owned().ctx(|| "dup stderr".into())?;
        Stdio::Fds(stdin, out, err)
    };
    let cg = cgroup_for_limits(&p.id, &p.spec, eng.dirs.rootless);
    let run_dir = eng.dirs.run.clone();
    let container_run = eng.dirs.container_run(&p.id);
    let specs = crate::ports::specs(&req.publish, req.publish_all, &p.exposed)?;
    let add = |pid: nix::unistd::Pid| -> std::result::Result<(), String> {
        if let Some(cg) = &cg {
            cg.add_pid(pid.as_raw()).map_err(|e| format!("join cgroup: {e}"))?;
        }
        crate::network::attach(&run_dir, pid.as_raw(), &p.endpoints)?;
        crate::ports::publish(&run_dir, &container_run, &p.id, &specs, p.endpoints.first().map(|e| e.ip))
    };
    let created = cove_runtime::create(CreateOptions { spec: &p.spec, rootfs: p.rootfs.clone(), rootless: eng.dirs.rootless, stdio, on_pid: Some(&add), userns: p.userns.clone(), seccomp_cache: Some(eng.dirs.run.clone()) });
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(cg) = &cg {
                let _ = cg.remove();
            }
            return Err(e.into());
        }
    };
    let pid = created.pid;
    tracing::debug!("created");
    let master = created.pty_master.as_ref().map(|m| m.as_fd().try_clone_to_owned()).transpose().ctx(|| "dup pty".into())?;
    eng.db.set_container_state(&p.id, "running", Some(pid.as_raw() as i64), None)?;
    // So other cove commands can tell whether this foreground container still runs.
    let rd = eng.dirs.container_run(&p.id);
    let _ = std::fs::create_dir_all(&rd).and_then(|_| crate::monitor::write_pid_file(&rd.join("pid"), pid.as_raw()).map_err(std::io::Error::other));
    let sfd = crate::tty::block_signals()?;
    let started = created.start();
    tracing::debug!("started");
    let code = match started {
        Ok(_) => crate::tty::wait_foreground(pid, sfd, master, req.interactive),
        Err(e) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(e.into())
        }
    };
    if !specs.is_empty() {
        crate::ports::unregister(&run_dir, &p.id);
    }
    if let Some(cg) = &cg {
        if let Err(e) = cg.remove() {
            tracing::debug!("remove cgroup: {e}");
        }
    }
    code
}
