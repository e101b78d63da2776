//! Verbs and flags (clap derive), Docker-compatible.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cove_engine::run::Engine;
use cove_engine::spec::RunRequest;
use cove_engine::{images, lifecycle, Dirs};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cove", version, about = "A daemonless, rootless-first container engine", disable_help_subcommand = true)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); also COVE_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// Whether this command puts cove code where a container can see it: a foreground `run`
    /// whose PID 1 stays cove's init (`--init`, or `init = true` in cove.conf), or `exec` (the
    /// process it forks into the container). Then it must run from a sealed copy of the binary
    /// (see cove_engine::exe). Without init, PID 1 is alone in its new pid namespace until
    /// its execve; `run -d`, `start` and `restart` start the monitor, which seals itself when
    /// needed.
    pub fn enters_containers(&self) -> bool {
        match self {
            Command::Run(a) if !a.detach => {
                let rootless = !nix::unistd::geteuid().is_root();
                // An unreadable config fails the command later; seal meanwhile.
                a.init.unwrap_or_else(|| cove_engine::config::load(rootless).map(|c| c.init).unwrap_or(true))
            }
            Command::Exec(_) => true,
            _ => false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a new container
    Run(RunArgs),
    /// Import a rootfs tarball as an image (like `docker import`)
    Import {
        /// Tarball path, or - for stdin
        file: String,
        /// Name for the image (REPOSITORY[:TAG])
        reference: Option<String>,
        /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE)
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Print only the image id
        #[arg(short, long)]
        quiet: bool,
    },
    /// Load images from a docker-archive, oci-archive or OCI layout directory
    Load {
        /// Input file or directory (default: stdin)
        #[arg(short, long)]
        input: Option<PathBuf>,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images
    Images(ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Display low-level information on images or containers
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        /// Only look for this kind of object (image, container)
        #[arg(long = "type")]
        kind: Option<String>,
        /// Format each object with a Go template (e.g. '{{.NetworkSettings.IPAddress}}')
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Create a new container (without starting it)
    Create(RunArgs),
    /// Start one or more stopped containers
    Start {
        /// Attach: follow the output and return the container's exit code
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers (StopSignal, then SIGKILL after the timeout)
    Stop {
        /// Seconds to wait before killing
        #[arg(short = 't', long = "time", alias = "timeout", allow_hyphen_values = true)]
        time: Option<i64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart one or more containers
    Restart {
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<i64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to one or more running containers
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Block until containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Fetch the logs of a container
    Logs {
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end (or "all")
        #[arg(short = 'n', long)]
        tail: Option<String>,
        /// Show logs since a timestamp (RFC 3339, Unix seconds) or relative (10m)
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// Show timestamps
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Display the running processes of a container
    Top { container: String },
    /// List port mappings of a container
    Port {
        container: String,
        /// Only this container port (PORT[/PROTO]); prints the host addresses alone
        port: Option<String>,
    },
    /// Attach to a running container's output (and its terminal's input with -t)
    Attach { container: String },
    /// List containers
    Ps(PsArgs),
    /// Remove one or more containers
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Query the embedded DNS of cove's networks (for debugging)
    #[command(subcommand)]
    Dns(DnsCmd),
    /// Display system-wide information (rootless mode, id mapping, storage, cgroups)
    Info {
        /// Output format: text (default) or json
        #[arg(short, long)]
        format: Option<String>,
    },
    /// System maintenance
    #[command(subcommand)]
    System(SystemCmd),
    /// Download an image from a registry
    Pull(crate::registry::PullArgs),
    /// Upload an image to a registry
    Push(crate::registry::PushArgs),
    /// Log in to a registry (credentials go to containers' auth.json)
    Login(crate::registry::LoginArgs),
    /// Log out from a registry
    Logout { registry: Option<String> },
    /// Save images to a docker-archive or oci-archive
    Save(crate::registry::SaveArgs),
}

#[derive(Subcommand, Debug)]
pub enum DnsCmd {
    /// Resolve a name (or an address, by PTR) as a container on the network would
    Resolve {
        /// Record type (A, AAAA, PTR, ...)
        #[arg(short = 't', long = "type", default_value = "A")]
        qtype: String,
        /// The network whose DNS server to ask (default: from the name, `db.mynet`, or each)
        #[arg(long)]
        network: Option<String>,
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a bridge network
    Create {
        /// Subnet in CIDR format (default: the next free /24 of 10.90.0.0/16); give it twice,
        /// an IPv4 and an IPv6 one, for dual stack
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway (default: the first address of the subnet); one per subnet family
        #[arg(long)]
        gateway: Vec<String>,
        /// Enable IPv6 (dual stack; default IPv6 subnet: the next free /64 of fd63:6f76:65::/48)
        #[arg(long)]
        ipv6: bool,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Driver (only bridge)
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Set metadata on the network (KEY[=VALUE])
        #[arg(long)]
        label: Vec<String>,
        /// Driver options: mtu=N (also com.docker.network.driver.mtu), allow_host_loopback=true (reach services on the host's 127.0.0.1 through host.containers.internal; off by default)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// The network DNS's upstream servers (default: the host's resolvers)
        #[arg(long)]
        dns: Vec<String>,
        /// Allocate container addresses from this sub-range (one per address family)
        #[arg(long)]
        ip_range: Vec<String>,
        /// Addresses IPAM must not hand out (NAME=IP)
        #[arg(long)]
        aux_address: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Filter: name=, id=, label=KEY[=VALUE], driver=
        #[arg(short, long)]
        filter: Vec<String>,
        /// Output format: table (default), json (one object a line) or a Go template
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on networks
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
        /// Format each network with a Go template
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a running container to a network
    Connect {
        /// Add a network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        /// IPv4 address on this network
        #[arg(long)]
        ip: Option<String>,
        /// IPv6 address on this network
        #[arg(long)]
        ip6: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Accepted for compatibility (disconnect always proceeds)
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all networks without containers
    Prune {
        #[arg(short, long)]
        force: bool,
        /// Only networks with (label=KEY[=VALUE]) or without (label!=...) a label
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune {
        /// Do not prompt (cove never prompts)
        #[arg(short, long)]
        force: bool,
    },
    /// List containers
    #[command(alias = "list")]
    Ls(PsArgs),
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container ids
    #[arg(short, long)]
    quiet: bool,
    /// Filter output (name=, id=, status=, ancestor=, label=)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Output format: table (default), json (one object a line) or a Go template ('table {{.Names}}\t{{.Status}}')
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(required = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Stop the per-user keeper process (it restarts on the next command)
    Migrate,
    /// Show disk usage of images, containers and volumes
    Df,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on images
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
        /// Format each image with a Go template
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove images
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Tag an image
    Tag { source: String, target: String },
    /// Import a rootfs tarball
    Import {
        file: String,
        reference: Option<String>,
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
    },
    /// Load images from an archive
    Load {
        #[arg(short, long)]
        input: Option<PathBuf>,
    },
    /// Download an image from a registry
    Pull(crate::registry::PullArgs),
    /// Upload an image to a registry
    Push(crate::registry::PushArgs),
    /// Save images to an archive
    Save(crate::registry::SaveArgs),
    /// Remove dangling images (-a: every image no container uses) and unreferenced content
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    /// Show full ids
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table (default), json (one object a line) or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Show registry digests
    #[arg(long)]
    digests: bool,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run the container in the background and print its id
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Bind mount a volume (SRC:DST[:ro])
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,...)
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTS])
    #[arg(long = "tmpfs")]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give all capabilities of the user namespace, no seccomp, no masked paths
    #[arg(long)]
    privileged: bool,
    /// Security options (seccomp=unconfined|FILE, no-new-privileges[=false])
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Memory limit (e.g. 64m)
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap, -1 for unlimited
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Network: a network name (default: "cove"), several comma-separated, none, host, or container:NAME
    #[arg(long = "network", alias = "net")]
    network: Option<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long = "ulimit")]
    ulimit: Vec<String>,
    /// Set metadata on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl")]
    sysctl: Vec<String>,
    /// Restart policy (no, always, unless-stopped, on-failure[:N])
    #[arg(long)]
    restart: Option<String>,
    /// Log driver options (max-size=10m, max-file=3)
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    /// Run cove's init as PID 1 (reaps zombies, forwards signals); --init=false to disable
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    init: Option<bool>,
    /// Where HOME lives in the container for the user (a private, writable directory)
    #[arg(long = "user-home")]
    user_home: Option<String>,
    /// Add a network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address of the container on its network (e.g. 10.90.1.50)
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address of the container on its network (an --ipv6 network)
    #[arg(long)]
    ip6: Option<String>,
    /// MAC address of the container's interface on its (first) network
    #[arg(long)]
    mac_address: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip; ip may be host-gateway, the host's address)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers (on a cove network: where its DNS forwards this container's queries)
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Set custom DNS search domains ("." for none)
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options (resolv.conf "options", e.g. ndots:2)
    #[arg(long = "dns-option", alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/udp])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Expose a port or a range of ports (PORT[-END][/PROTO]); -P publishes them
    #[arg(long)]
    expose: Vec<String>,
    /// Publish all exposed ports to random host ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Pull the image: missing (default), always, never
    #[arg(long, default_value = "missing")]
    pull: String,
    /// Image to run
    image: String,
    /// Command and arguments
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn into_request(self) -> RunRequest {
        RunRequest {
            image: self.image,
            name: self.name,
            cmd: self.command,
            entrypoint: self.entrypoint,
            env: self.env,
            env_files: self.env_file,
            workdir: self.workdir,
            user: self.user,
            volumes: self.volume,
            mounts: self.mount,
            tmpfs: self.tmpfs,
            read_only: self.read_only,
            hostname: self.hostname,
            rm: self.rm,
            tty: self.tty,
            interactive: self.interactive,
            detach: self.detach,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            security_opt: self.security_opt,
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            network: self.network,
            ulimits: self.ulimit,
            labels: self.label,
            sysctls: self.sysctl,
            restart: self.restart,
            log_opts: self.log_opt,
            stop_signal: self.stop_signal,
            stop_timeout: self.stop_timeout,
            init: self.init,
            user_home: self.user_home,
            network_aliases: self.network_alias,
            ip: self.ip,
            ip6: self.ip6,
            mac_address: self.mac_address,
            expose: self.expose,
            add_hosts: self.add_host,
            dns: self.dns,
            dns_search: self.dns_search,
            dns_options: self.dns_option,
            publish: self.publish,
            publish_all: self.publish_all,
        }
    }
}

/// Prepares the process: directories, then (rootless) the user namespace, then the engine.
fn open_engine(dirs: Dirs) -> Result<(Engine, Option<cove_runtime::userns::IdMapping>)> {
    let mapping = enter_userns(&dirs)?;
    tracing::debug!("in the user namespace");
    let eng = Engine::open(dirs)?;
    tracing::debug!("engine open");
    Ok((eng, mapping))
}

fn enter_userns(dirs: &Dirs) -> Result<Option<cove_runtime::userns::IdMapping>> {
    if !dirs.rootless {
        return Ok(None);
    }
    let mapping = cove_runtime::userns::plan_mapping(nix::unistd::Uid::from_raw(dirs.uid), nix::unistd::Gid::from_raw(dirs.gid), &dirs.user_name);
    cove_runtime::userns::join_keeper(&dirs.run, &mapping).context("cannot enter the rootless user namespace")?;
    Ok(Some(mapping))
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    // Commands that must not start anything.
    if let Command::Login(a) = &cli.command {
        return crate::registry::login(a, !nix::unistd::getuid().is_root());
    }
    if let Command::Logout { registry } = &cli.command {
        return crate::registry::logout(registry.as_deref());
    }
    if let Command::System(SystemCmd::Migrate) = &cli.command {
        let dirs = Dirs::for_current_user()?;
        cove_engine::netd::stop(&dirs.run);
        cove_runtime::userns::stop_keeper(&dirs.run);
        return Ok(0);
    }
    let dirs = Dirs::for_current_user()?;
    let (eng, mapping) = open_engine(dirs)?;
    // The process exits right after this command: skip the database's close-time WAL
    // checkpoint (two fsyncs and an unlink on every command); the WAL stays valid and the
    // next command reuses it. SQLite checkpoints on its own as the WAL grows.
    let mut eng = std::mem::ManuallyDrop::new(eng);
    let eng = &mut *eng;
    run_command(cli.command, eng, mapping)
}

fn run_command(command: Command, eng: &mut Engine, mapping: Option<cove_runtime::userns::IdMapping>) -> Result<i32> {
    match command {
        Command::Run(args) => {
            if args.tty && args.interactive && !args.detach && !stdin_is_a_tty() {
                return Ok(not_a_tty());
            }
            crate::registry::pull_for_run(eng, &args.image, &args.pull)?;
            let req = args.into_request();
            if req.detach {
                let id = lifecycle::run_detached(eng, &req)?;
                println!("{id}");
                return Ok(0);
            }
            Ok(cove_engine::run::run(eng, &req)?)
        }
        Command::Create(args) => {
            crate::registry::pull_for_run(eng, &args.image, &args.pull)?;
            let req = args.into_request();
            println!("{}", lifecycle::create(eng, &req)?);
            Ok(0)
        }
        Command::Start { attach, containers } => {
            let mut failed = false;
            for c in &containers {
                match lifecycle::start(eng, c) {
                    Ok(_) if attach && containers.len() == 1 => {
                        let o = lifecycle::LogsOptions { follow: true, ..Default::default() };
                        lifecycle::logs(eng, c, &o, &mut std::io::stdout(), &mut std::io::stderr())?;
                        return Ok(lifecycle::wait(eng, c)? as i32);
                    }
                    Ok(_) => println!("{c}"),
                    Err(e) => {
                        eprintln!("cove: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Stop { time, containers } => each(&containers, |c| lifecycle::stop(eng, c, time)),
        Command::Restart { time, containers } => each(&containers, |c| {
            lifecycle::stop(eng, c, time)?;
            lifecycle::start(eng, c).map(|_| ())
        }),
        Command::Kill { signal, containers } => {
            let sig = lifecycle::parse_signal(&signal)?;
            each(&containers, |c| lifecycle::kill(eng, c, sig).map(|_| ()))
        }
        Command::Wait { containers } => {
            let mut failed = false;
            for c in &containers {
                match lifecycle::wait(eng, c) {
                    Ok(code) => println!("{code}"),
                    Err(e) => {
                        eprintln!("cove: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Logs { follow, tail, since, until, timestamps, container } => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse::<usize>().map_err(|_| anyhow!("invalid --tail {n:?}: a number or \"all\""))?),
            };
            let o = lifecycle::LogsOptions {
                follow,
                tail,
                since: since.as_deref().map(|s| cove_engine::logs::parse_time(s, now)).transpose()?,
                until: until.as_deref().map(|s| cove_engine::logs::parse_time(s, now)).transpose()?,
                timestamps,
            };
            lifecycle::logs(eng, &container, &o, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
            Ok(0)
        }
        Command::Exec(a) => {
            if a.tty && a.interactive && !stdin_is_a_tty() {
                return Ok(not_a_tty());
            }
            let o = lifecycle::ExecOptions { args: a.command, user: a.user, workdir: a.workdir, env: a.env, tty: a.tty, interactive: a.interactive, privileged: a.privileged };
            Ok(lifecycle::exec(eng, &a.container, &o)?)
        }
        Command::Attach { container } => Ok(lifecycle::attach(eng, &container)? as i32),
        Command::Port { container, port } => {
            let c = eng.db.find_container(&container)?;
            let published = cove_engine::ports::served(&eng.dirs.run, &eng.dirs.container_run(&c.id));
            let Some(want) = port else {
                for p in published {
                    println!("{}/{} -> {}", p.container_port, p.proto, std::net::SocketAddr::new(p.host_ip, p.host_port));
                }
                return Ok(0);
            };
            let (num, proto) = want.split_once('/').unwrap_or((want.as_str(), "tcp"));
            let num: u16 = num.parse().map_err(|_| anyhow::anyhow!("invalid port {want:?}: PORT[/tcp|udp]"))?;
            let mut found = false;
            for p in published.iter().filter(|p| p.container_port == num && p.proto == proto) {
                println!("{}", std::net::SocketAddr::new(p.host_ip, p.host_port));
                found = true;
            }
            if !found {
                bail!("no public port '{num}/{proto}' published for {}", c.name);
            }
            Ok(0)
        }
        Command::Top { container } => {
            let rows = lifecycle::top(eng, &container)?;
            println!("{:<10} {:<10} {:<10} CMD", "PID", "UID", "TIME");
            for r in rows {
                println!("{:<10} {:<10} {:<10} {}", r[0], r[1], r[2], r[3]);
            }
            Ok(0)
        }
        Command::Container(ContainerCmd::Prune { force: _ }) => {
            let removed = lifecycle::prune(eng)?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for id in &removed {
                    println!("{id}");
                }
            }
            println!("Total reclaimed containers: {}", removed.len());
            Ok(0)
        }
        Command::Container(ContainerCmd::Ls(a)) => ps(eng, &a),
        Command::Network(NetworkCmd::Create { subnet, gateway, ipv6, internal, driver, label, opt, dns, ip_range, aux_address, name }) => {
            if driver != "bridge" {
                bail!("network driver {driver:?} is not supported (bridge)");
            }
            // Split by family: an IPv4 subnet and gateway, and optionally IPv6 ones.
            let is6 = |s: &String| s.contains(':');
            let (s6, s4): (Vec<String>, Vec<String>) = subnet.into_iter().partition(is6);
            let (g6, g4): (Vec<String>, Vec<String>) = gateway.into_iter().partition(is6);
            if s4.len() > 1 || s6.len() > 1 || g4.len() > 1 || g6.len() > 1 {
                bail!("--subnet and --gateway: at most one IPv4 and one IPv6 each");
            }
            let o = cove_engine::network::CreateOptions {
                subnet: s4.into_iter().next(),
                gateway: g4.into_iter().next(),
                internal,
                ipv6,
                subnet6: s6.into_iter().next(),
                gateway6: g6.into_iter().next(),
                labels: label,
                options: opt,
                dns,
                ip_ranges: ip_range,
                aux_addresses: aux_address,
            };
            println!("{}", cove_engine::network::create(eng, &name, &o)?.id);
            Ok(0)
        }
        Command::Network(NetworkCmd::Ls { quiet, filter, format }) => {
            let format = ListFormat::parse(format.as_deref())?;
            let filters = cove_engine::network::Filters::parse(&filter, &["name", "id", "label", "driver"])?;
            let rows: Vec<_> = cove_engine::network::list(eng)?.into_iter().filter(|n| filters.matches(n)).collect();
            if quiet {
                for n in &rows {
                    println!("{}", &n.id[..12]);
                }
                return Ok(0);
            }
            let data: Vec<serde_json::Value> = rows
                .iter()
                .map(|n| {
                    let subnet = n.subnet6.as_ref().map_or(n.subnet.clone(), |s6| format!("{},{s6}", n.subnet));
                    let gateway = n.gateway6.as_ref().map_or(n.gateway.clone(), |g6| format!("{},{g6}", n.gateway));
                    serde_json::json!({
                        "ID": &n.id[..12], "Name": n.name, "Driver": "bridge", "Scope": "local",
                        "IPv6": n.subnet6.is_some().to_string(), "Internal": n.internal.to_string(),
                        "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                        "CreatedAt": n.created, "Subnet": subnet, "Gateway": gateway,
                    })
                })
                .collect();
            let headers = [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE"), ("IPv6", "IPV6"), ("Internal", "INTERNAL"), ("Labels", "LABELS"), ("CreatedAt", "CREATED"), ("Subnet", "SUBNET"), ("Gateway", "GATEWAY")];
            format.print(&data, &headers, || {
                let mut table = crate::table::Table::new(&["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"]);
                for d in &data {
                    let f = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                    table.row(vec![f("ID"), f("Name"), f("Driver"), f("Subnet"), f("Gateway")]);
                }
                table.write(&mut std::io::stdout().lock())?;
                Ok(())
            })?;
            Ok(0)
        }
        Command::Network(NetworkCmd::Inspect { networks, format }) => {
            let tmpl = inspect_template(format.as_deref())?;
            let mut out = vec![];
            let mut failed = false;
            for n in &networks {
                match cove_engine::network::find(eng, n).and_then(|r| cove_engine::network::inspect_json(eng, &r)) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("cove: error: {e}");
                        failed = true;
                    }
                }
            }
            print_inspected(&out, tmpl.as_ref())?;
            Ok(if failed { 1 } else { 0 })
        }
        Command::Dns(DnsCmd::Resolve { qtype, network, name }) => {
            match cove_engine::network::resolve(eng, &name, &qtype, network.as_deref()) {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    Ok(0)
                }
                // Like `host`/`nslookup`: a name that does not resolve is exit 1, not an engine failure.
                Err(e @ cove_engine::Error::NotFound(_)) => {
                    eprintln!("cove: error: {e}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Network(NetworkCmd::Connect { alias, ip, ip6, network, container }) => {
            let fixed = cove_engine::network::StaticIp::parse(ip.as_deref(), ip6.as_deref())?;
            cove_engine::network::connect(eng, &network, &container, &alias, fixed)?;
            Ok(0)
        }
        Command::Network(NetworkCmd::Disconnect { force: _, network, container }) => {
            cove_engine::network::disconnect(eng, &network, &container)?;
            Ok(0)
        }
        Command::Network(NetworkCmd::Rm { networks }) => each(&networks, |n| cove_engine::network::remove(eng, n).map(|_| ())),
        Command::Network(NetworkCmd::Prune { force: _, filter }) => {
            let filters = cove_engine::network::Filters::parse(&filter, &["label", "label!"])?;
            let removed = cove_engine::network::prune(eng, &filters)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        Command::Import { file, reference, change, quiet: _ } | Command::Image(ImageCmd::Import { file, reference, change }) => {
            let opts = eng.unpack_options();
            let id = if file == "-" {
                images::import(&mut eng.db, &eng.store, std::io::stdin().lock(), reference.as_deref(), &change, &opts)?
            } else {
                let f = std::fs::File::open(&file).with_context(|| format!("open {file}"))?;
                images::import(&mut eng.db, &eng.store, std::io::BufReader::new(f), reference.as_deref(), &change, &opts)?
            };
            println!("{id}");
            Ok(0)
        }
        Command::Load { input, quiet } => load(eng, input, quiet),
        Command::Image(ImageCmd::Load { input }) => load(eng, input, false),
        Command::Images(a) | Command::Image(ImageCmd::Ls(a)) => list_images(eng, &a),
        Command::Image(ImageCmd::Inspect { images: names, format }) => inspect(eng, &names, Some("image"), format.as_deref()),
        Command::Inspect { names, kind, format } => inspect(eng, &names, kind.as_deref(), format.as_deref()),
        Command::Tag { source, target } | Command::Image(ImageCmd::Tag { source, target }) => {
            images::tag(&mut eng.db, &source, &target)?;
            Ok(0)
        }
        Command::Rmi { force, images: names } | Command::Image(ImageCmd::Rm { force, images: names }) => {
            let mut failed = false;
            for n in &names {
                match images::remove(&mut eng.db, &eng.store, n, force) {
                    Ok(r) => {
                        for u in r.untagged {
                            println!("Untagged: {u}");
                        }
                        for d in r.deleted {
                            println!("Deleted: {d}");
                        }
                    }
                    Err(e) => {
                        eprintln!("cove: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Ps(a) => ps(eng, &a),
        Command::Rm { force, containers } => {
            let mut failed = false;
            for c in &containers {
                match lifecycle::remove(eng, c, force) {
                    Ok(_) => println!("{c}"),
                    Err(e) => {
                        eprintln!("cove: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Info { format } => {
            let v = cove_engine::info::report(&eng.dirs, mapping.as_ref());
            if format.as_deref() == Some("json") || format.as_deref() == Some("{{json .}}") {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_info(&v);
            }
            Ok(0)
        }
        Command::Pull(a) | Command::Image(ImageCmd::Pull(a)) => crate::registry::pull(eng, &a),
        Command::Push(a) | Command::Image(ImageCmd::Push(a)) => crate::registry::push(eng, &a),
        Command::Save(a) | Command::Image(ImageCmd::Save(a)) => crate::registry::save(eng, &a),
        Command::Image(ImageCmd::Prune { all, force: _ }) => crate::registry::prune(eng, all),
        Command::System(SystemCmd::Df) => crate::registry::df(eng),
        Command::System(_) | Command::Login(_) | Command::Logout { .. } => Ok(0),
    }
}

fn load(eng: &mut Engine, input: Option<PathBuf>, quiet: bool) -> Result<i32> {
    let opts = eng.unpack_options();
    // `load` without -i reads stdin: spool it to a file (archives need random access).
    let (path, _tmp) = match input {
        Some(p) => (p, None),
        None => {
            let tmp = tempfile_in(&eng.dirs.storage())?;
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut f).context("read image archive from stdin")?;
            (tmp.clone(), Some(TempPath(tmp)))
        }
    };
    let loaded = images::load(&mut eng.db, &eng.store, &path, &opts)?;
    if loaded.is_empty() {
        bail!("no images found in {}", path.display());
    }
    if !quiet {
        for (id, tags) in loaded {
            if tags.is_empty() {
                println!("Loaded image ID: {id}");
            }
            for t in tags {
                println!("Loaded image: {}", cove_oci::normalize_image_name(&t).unwrap_or(t));
            }
        }
    }
    Ok(0)
}

struct TempPath(PathBuf);
impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_in(dir: &std::path::Path) -> Result<PathBuf> {
    let d = dir.join("tmp");
    std::fs::create_dir_all(&d)?;
    Ok(d.join(format!("stdin-{}.tar", cove_oci::new_id()?)))
}

pub(crate) fn human_size(n: i64) -> String {
    let n = n as f64;
    for (unit, div) in [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] {
        if n >= div {
            return format!("{:.3}{unit}", n / div).replace(".000", "");
        }
    }
    format!("{n}B")
}

fn ago(ts: &str) -> String {
    let Some(t) = cove_engine::db::parse_rfc3339(ts) else { return "N/A".into() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let s = (now - t).max(0);
    match s {
        0..=1 => "Less than a second ago".into(),
        2..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn list_images(eng: &Engine, a: &ImagesArgs) -> Result<i32> {
    let format = ListFormat::parse(a.format.as_deref())?;
    let imgs = eng.db.images()?;
    let tags = eng.db.tags()?;
    let mut data = vec![];
    for i in &imgs {
        let id = if a.no_trunc { i.id.clone() } else { cove_oci::short_id(&i.id).to_string() };
        if a.quiet {
            println!("{id}");
            continue;
        }
        let mine: Vec<&String> = tags.iter().filter(|(_, t)| *t == i.id).map(|(n, _)| n).collect();
        let rows: Vec<(String, String)> = if mine.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            mine.iter()
                .map(|n| match n.split_once('@') {
                    Some((r, _)) => (r.to_string(), "<none>".to_string()),
                    None => n.rsplit_once(':').map(|(r, t)| (r.to_string(), t.to_string())).unwrap_or(((*n).clone(), "latest".into())),
                })
                .collect()
        };
        for (repo, tag) in rows {
            data.push(serde_json::json!({
                "Repository": repo, "Tag": tag, "Digest": i.digest.clone().unwrap_or_else(|| "<none>".into()), "ID": id,
                "CreatedSince": ago(&i.created), "CreatedAt": i.created, "Size": human_size(i.size),
            }));
        }
    }
    if a.quiet {
        return Ok(0);
    }
    let headers = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("Digest", "DIGEST"), ("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("CreatedAt", "CREATED AT"), ("Size", "SIZE")];
    format.print(&data, &headers, || {
        let mut cols = vec!["REPOSITORY", "TAG"];
        if a.digests {
            cols.push("DIGEST");
        }
        cols.extend(["IMAGE ID", "CREATED", "SIZE"]);
        let mut table = crate::table::Table::new(&cols);
        for d in &data {
            let f = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            let mut cells = vec![f("Repository"), f("Tag")];
            if a.digests {
                cells.push(f("Digest"));
            }
            cells.extend([f("ID"), f("CreatedSince"), f("Size")]);
            table.row(cells);
        }
        table.write(&mut std::io::stdout().lock())?;
        Ok(())
    })?;
    Ok(0)
}

fn container_json(eng: &Engine, c: &cove_engine::db::ContainerRow) -> serde_json::Value {
    let req: serde_json::Value = serde_json::from_str(&c.config).unwrap_or_default();
    // What the container really runs with (image defaults merged): its OCI spec.
    let spec: serde_json::Value = std::fs::read(eng.dirs.container(&c.id).join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let env = spec.pointer("/process/env").cloned().filter(|e| e.is_array()).or_else(|| req.get("env").cloned());
    serde_json::json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "Created": c.created,
        "Image": c.image_id,
        "State": {
            "Status": c.state,
            "Running": c.state == "running",
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "StartedAt": c.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": c.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Config": {
            "Image": c.image,
            "Cmd": req.get("cmd"),
            "Env": env,
            "Hostname": spec.get("hostname").cloned().unwrap_or_default(),
            "User": req.get("user").cloned().unwrap_or_default(),
            "WorkingDir": req.get("workdir").cloned().unwrap_or_default(),
            "Tty": req.get("tty"),
            "Labels": req.get("labels").and_then(|l| l.as_array()).map(|l| {
                l.iter().filter_map(|x| x.as_str()).map(|x| { let (k, v) = x.split_once('=').unwrap_or((x, "")); (k.to_string(), serde_json::Value::from(v)) }).collect::<serde_json::Map<_, _>>()
            }),
        },
        "NetworkSettings": network_settings(eng, c),
        "HostConfig": {
            "AutoRemove": req.get("rm"),
            "ReadonlyRootfs": req.get("read_only"),
            "Binds": req.get("volumes"),
            "Privileged": req.get("privileged"),
            "CapAdd": req.get("cap_add"),
            "CapDrop": req.get("cap_drop"),
            // No --network: the default network ("bridge" for Docker's tools).
            "NetworkMode": req.get("network").cloned().filter(|v| !v.is_null() && v.as_str() != Some("")).unwrap_or_else(|| "bridge".into()),
            "Dns": req.get("dns"),
            "DnsSearch": req.get("dns_search"),
            "DnsOptions": req.get("dns_options"),
            "ExtraHosts": req.get("add_hosts"),
            "PublishAllPorts": req.get("publish_all"),
            "RestartPolicy": { "Name": req.get("restart").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| "no".into()) },
        },
    })
}

fn network_settings(eng: &Engine, c: &cove_engine::db::ContainerRow) -> serde_json::Value {
    let req: RunRequest = serde_json::from_str(&c.config).unwrap_or_default();
    let nets = cove_engine::network::list(eng).unwrap_or_default();
    let eps = eng.db.container_endpoints6(&c.id).unwrap_or_default();
    let aliases: std::collections::HashMap<String, Vec<String>> = eng.db.container_aliases(&c.id).unwrap_or_default().into_iter().collect();
    let prefix = |subnet: &str| subnet.split('/').nth(1).and_then(|p| p.parse::<u8>().ok()).unwrap_or(0);
    let mut networks = serde_json::Map::new();
    for (k, (name, ip, ip6)) in eps.iter().enumerate() {
        let n = nets.iter().find(|n| &n.name == name);
        let mut v = serde_json::json!({
            "NetworkID": n.map(|n| n.id.clone()).unwrap_or_default(),
            "IPAddress": ip,
            "IPPrefixLen": n.map(|n| prefix(&n.subnet)).unwrap_or(0),
            "Gateway": n.map(|n| n.gateway.clone()).unwrap_or_default(),
            "GlobalIPv6Address": ip6.clone().unwrap_or_default(),
            "GlobalIPv6PrefixLen": n.and_then(|n| n.subnet6.as_deref()).map(prefix).unwrap_or(0),
            "IPv6Gateway": n.and_then(|n| n.gateway6.clone()).unwrap_or_default(),
            "Aliases": aliases.get(name).cloned().unwrap_or_default(),
        });
        if let (0, Some(m)) = (k, &req.mac_address) {
            v["MacAddress"] = m.to_lowercase().replace('-', ":").into();
        }
        // --ip/--ip6 (on the first network, as run takes them).
        if k == 0 && (req.ip.is_some() || req.ip6.is_some()) {
            v["IPAMConfig"] = serde_json::json!({ "IPv4Address": req.ip.clone().unwrap_or_default(), "IPv6Address": req.ip6.clone().unwrap_or_default() });
        }
        networks.insert(name.clone(), v);
    }
    // Docker's Ports: "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, ...]; null while
    // the container does not run.
    let mut ports = serde_json::Map::new();
    for p in cove_engine::ports::served(&eng.dirs.run, &eng.dirs.container_run(&c.id)) {
        let key = format!("{}/{}", p.container_port, p.proto);
        let entry = ports.entry(key).or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }));
        }
    }
    // The top-level fields are the first network's (eth0's); the map is sorted by name.
    let first = eps.first().and_then(|(n, _, _)| networks.get(n)).cloned().unwrap_or_else(|| serde_json::json!({}));
    let field = |k: &str| first.get(k).cloned().unwrap_or_else(|| serde_json::json!(""));
    serde_json::json!({
        "IPAddress": field("IPAddress"),
        "IPPrefixLen": first.get("IPPrefixLen").cloned().unwrap_or_else(|| 0.into()),
        "Gateway": field("Gateway"),
        "GlobalIPv6Address": field("GlobalIPv6Address"),
        "IPv6Gateway": field("IPv6Gateway"),
        "MacAddress": field("MacAddress"),
        "Ports": ports,
        "Networks": networks,
    })
}

fn inspect(eng: &mut Engine, names: &[String], kind: Option<&str>, format: Option<&str>) -> Result<i32> {
    let tmpl = inspect_template(format)?;
    lifecycle::reconcile(eng)?;
    let mut out = vec![];
    let mut failed = false;
    for n in names {
        let found = match kind {
            Some("image") => images::resolve(&eng.db, n).and_then(|i| images::inspect_json(&eng.db, &i)).map_err(anyhow::Error::from),
            Some("container") => eng.db.find_container(n).map(|c| container_json(eng, &c)).map_err(anyhow::Error::from),
            None => match eng.db.find_container(n) {
                Ok(c) => Ok(container_json(eng, &c)),
                Err(_) => images::resolve(&eng.db, n).and_then(|i| images::inspect_json(&eng.db, &i)).map_err(|_| anyhow!("no such object: {n}")),
            },
            Some(other) => bail!("unknown --type {other:?} (image or container)"),
        };
        match found {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("cove: error: {e:#}");
                failed = true;
            }
        }
    }
    print_inspected(&out, tmpl.as_ref())?;
    Ok(if failed { 1 } else { 0 })
}

/// `inspect -f`: no format or `json` is the JSON array; anything else a Go template.
fn inspect_template(format: Option<&str>) -> Result<Option<cove_gotemplate::Template>> {
    match format {
        None | Some("") | Some("json") => Ok(None),
        Some(f) => Ok(Some(cove_gotemplate::Template::parse(f).map_err(|e| anyhow!("{e}"))?)),
    }
}

/// Prints inspected objects: the JSON array, or each object through the template, a line each.
fn print_inspected(objects: &[serde_json::Value], tmpl: Option<&cove_gotemplate::Template>) -> Result<()> {
    let Some(t) = tmpl else {
        println!("{}", serde_json::to_string_pretty(objects)?);
        return Ok(());
    };
    let mut out = std::io::stdout().lock();
    for o in objects {
        writeln!(out, "{}", t.render(o).map_err(|e| anyhow!("{e}"))?)?;
    }
    Ok(())
}

/// `--format` of the listing commands (ps, images, network ls).
enum ListFormat {
    Table,
    /// One JSON object a line (Docker's `--format json`).
    Json,
    /// A template per row; `table` prefix: a header line and aligned columns (cells split at tabs).
    Template { table: bool, tmpl: cove_gotemplate::Template },
}

impl ListFormat {
    fn parse(format: Option<&str>) -> Result<ListFormat> {
        Ok(match format.map(str::trim) {
            None | Some("") | Some("table") => ListFormat::Table,
            Some("json") | Some("{{json .}}") => ListFormat::Json,
            Some(f) => {
                let (table, body) = match f.strip_prefix("table") {
                    Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
                    _ => (false, f),
                };
                // Go's tabwriter sees "\t" typed on a command line as a tab, as Docker does.
                let body = body.replace("\\t", "\t");
                ListFormat::Template { table, tmpl: cove_gotemplate::Template::parse(&body).map_err(|e| anyhow!("{e}"))? }
            }
        })
    }

    /// Prints `rows` (objects with the template's field names) with `headers` naming the
    /// fields for a `table` template; `fallback` prints the default table.
    fn print(&self, rows: &[serde_json::Value], headers: &[(&str, &str)], fallback: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match self {
            ListFormat::Table => fallback(),
            ListFormat::Json => {
                for r in rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
                Ok(())
            }
            ListFormat::Template { table: false, tmpl } => {
                for r in rows {
                    writeln!(out, "{}", tmpl.render(r).map_err(|e| anyhow!("{e}"))?)?;
                }
                Ok(())
            }
            ListFormat::Template { table: true, tmpl } => {
                // The header: the template rendered over the field names' headers.
                let names: serde_json::Map<String, serde_json::Value> = headers.iter().map(|(k, h)| (k.to_string(), serde_json::Value::from(*h))).collect();
                let header = tmpl.render(&serde_json::Value::Object(names)).unwrap_or_default();
                let mut t = crate::table::Table::new(&header.split('\t').collect::<Vec<_>>());
                for r in rows {
                    t.row(tmpl.render(r).map_err(|e| anyhow!("{e}"))?.split('\t').map(String::from).collect());
                }
                t.write(&mut out)?;
                Ok(())
            }
        }
    }
}

/// Runs `f` for each name; prints the name on success, one error line per failure.
fn each(names: &[String], mut f: impl FnMut(&str) -> cove_engine::Result<()>) -> Result<i32> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("cove: error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn ps(eng: &mut Engine, a: &PsArgs) -> Result<i32> {
    lifecycle::reconcile(eng)?;
    let mut filters: Vec<(String, String)> = vec![];
    for f in &a.filter {
        let (k, v) = f.split_once('=').ok_or_else(|| anyhow!("invalid filter {f:?}: expected key=value"))?;
        if !["name", "id", "status", "ancestor", "label", "exited"].contains(&k) {
            bail!("invalid filter {k:?} (name, id, status, ancestor, label, exited)");
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let show_all = a.all || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let rows: Vec<_> = eng
        .db
        .containers()?
        .into_iter()
        .filter(|c| show_all || c.state == "running")
        .filter(|c| {
            let req: RunRequest = serde_json::from_str(&c.config).unwrap_or_default();
            filters.iter().all(|(k, v)| match k.as_str() {
                "name" => c.name.contains(v.as_str()),
                "id" => c.id.starts_with(v.as_str()),
                "status" => c.state == *v,
                "ancestor" => c.image == *v || c.image_id.contains(v.as_str()),
                "exited" => c.state == "exited" && c.exit_code.map(|x| x.to_string()) == Some(v.clone()),
                "label" => req.labels.iter().any(|l| l == v || l.split('=').next() == Some(v.as_str())),
                _ => true,
            })
        })
        .collect();
    let format = ListFormat::parse(a.format.as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &rows {
            writeln!(out, "{}", if a.no_trunc { c.id.as_str() } else { cove_oci::short_id(&c.id) })?;
        }
        return Ok(0);
    }
    let data: Vec<serde_json::Value> = rows.iter().map(|c| ps_row(eng, c, a.no_trunc)).collect();
    let headers = [
        ("ID", "CONTAINER ID"), ("Image", "IMAGE"), ("Command", "COMMAND"), ("CreatedAt", "CREATED AT"), ("RunningFor", "CREATED"),
        ("Ports", "PORTS"), ("State", "STATE"), ("Status", "STATUS"), ("Names", "NAMES"), ("Labels", "LABELS"), ("Networks", "NETWORKS"),
    ];
    format.print(&data, &headers, || {
        let mut table = crate::table::Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]);
        for d in &data {
            let f = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            table.row(vec![f("ID"), f("Image"), f("Command"), f("RunningFor"), f("Status"), f("Ports"), f("Names")]);
        }
        table.write(&mut out)?;
        Ok(())
    })?;
    Ok(0)
}

/// One `ps` row with Docker's field names (what `--format` templates and json see).
fn ps_row(eng: &Engine, c: &cove_engine::db::ContainerRow, no_trunc: bool) -> serde_json::Value {
    let req: RunRequest = serde_json::from_str(&c.config).unwrap_or_default();
    let mut cmd = req.cmd.join(" ");
    if cmd.chars().count() > 20 && !no_trunc {
        cmd = cmd.chars().take(17).collect::<String>() + "...";
    }
    // Docker's PORTS: "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp" while the container runs.
    let ports: Vec<String> = if c.state == "running" {
        cove_engine::ports::served(&eng.dirs.run, &eng.dirs.container_run(&c.id)).iter().map(|p| format!("{}->{}/{}", std::net::SocketAddr::new(p.host_ip, p.host_port), p.container_port, p.proto)).collect()
    } else {
        vec![]
    };
    let networks: Vec<String> = eng.db.container_endpoints6(&c.id).unwrap_or_default().into_iter().map(|(n, _, _)| n).collect();
    serde_json::json!({
        "ID": if no_trunc { c.id.clone() } else { cove_oci::short_id(&c.id).to_string() },
        "Image": c.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": c.created,
        "RunningFor": ago(&c.created),
        "Ports": ports.join(", "),
        "State": c.state,
        "Status": lifecycle::status_text(c, ago),
        "Names": c.name,
        "Labels": req.labels.join(","),
        "Networks": networks.join(","),
    })
}

fn print_info(v: &serde_json::Value) {
    let s = |p: &str| v.pointer(p).map(|x| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        o => o.to_string(),
    }).unwrap_or_else(|| "-".into());
    println!("Rootless: {}", s("/Rootless"));
    println!("User: {} (uid {}, gid {})", s("/User/Name"), s("/User/Uid"), s("/User/Gid"));
    if v.pointer("/IdMapping").is_some_and(|m| !m.is_null()) {
        println!("ID mapping: {}", s("/IdMapping/Kind"));
        println!("  uid map: {}", s("/IdMapping/UidMap"));
        println!("  gid map: {}", s("/IdMapping/GidMap"));
        if v.pointer("/IdMapping/Why").is_some_and(|w| !w.is_null()) {
            println!("  why: {}", s("/IdMapping/Why"));
        }
    }
    println!("Kernel: {}", s("/Kernel"));
    println!("Storage driver: {}", s("/Storage/Driver"));
    println!("  why: {}", s("/Storage/Why"));
    println!("  root: {}", s("/Storage/Root"));
    println!("Cgroups: {} hierarchy, limits {}", s("/Cgroups/Hierarchy"), if v.pointer("/Cgroups/Usable") == Some(&serde_json::Value::Bool(true)) { "applied" } else { "not applied" });
    if v.pointer("/Cgroups/Why").is_some_and(|w| !w.is_null()) {
        println!("  why: {}", s("/Cgroups/Why"));
    }
    println!("Seccomp: {}", s("/Seccomp"));
    println!("Data root: {}", s("/DataRoot"));
    println!("Run root: {}", s("/RunRoot"));
    println!("Keeper pid: {}", s("/KeeperPid"));
    println!("Network outbound: {}", s("/Network/Outbound"));
    println!("Tools:");
    if let Some(serde_json::Value::Object(t)) = v.pointer("/Tools") {
        for (k, val) in t {
            println!("  {k}: {}", val.as_str().unwrap_or("not installed"));
        }
    }
    println!("Devices:");
    if let Some(serde_json::Value::Object(t)) = v.pointer("/Devices") {
        for (k, val) in t {
            println!("  {k}: {}", val.as_str().unwrap_or("-"));
        }
    }
}

fn stdin_is_a_tty() -> bool {
    nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
}

/// `-it` with a pipe or file as stdin: there is no terminal to put in raw mode and relay, and
/// the container would wait on a pty nobody types into. Docker refuses before anything exists,
/// with exit code 1.
fn not_a_tty() -> i32 {
    eprintln!("cove: error: the input device is not a TTY");
    1
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn sealed_binary_only_where_a_container_sees_cove_code() {
        use clap::Parser;
        let enters = |args: &[&str]| super::Cli::try_parse_from([&["cove"], args].concat()).unwrap().command.enters_containers();
        assert!(enters(&["run", "--rm", "--init", "bb", "true"]));
        assert!(!enters(&["run", "--rm", "--init=false", "bb", "true"]));
        assert!(!enters(&["run", "-d", "--init", "bb", "true"]), "the monitor seals itself");
        assert!(enters(&["exec", "c", "true"]));
        assert!(!enters(&["ps"]));
        assert!(!enters(&["start", "c"]));
    }
}
