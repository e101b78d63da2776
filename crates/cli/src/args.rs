//! The command line's shape (clap derive): every verb, subcommand and flag, Docker-compatible,
//! and nothing that runs them (see `verbs`).

use clap::{Args, Parser, Subcommand};
use cove_engine::spec::RunRequest;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cove",
    version,
    about = "A daemonless, rootless-first container engine",
    disable_help_subcommand = true
)]
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
    /// mDNS: what this user publishes on the LAN, and what the LAN offers
    #[command(subcommand)]
    Mdns(MdnsCmd),
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
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry (credentials go to containers' auth.json)
    Login(LoginArgs),
    /// Log out from a registry
    Logout { registry: Option<String> },
    /// Save images to a docker-archive or oci-archive
    Save(SaveArgs),
}

#[derive(Subcommand, Debug)]
pub enum MdnsCmd {
    /// What this user publishes (names, services, their state) and on which interfaces
    #[command(alias = "list")]
    Ls,
    /// Browse the LAN's services, like avahi-browse (all types when none is given)
    Browse {
        /// Service type, e.g. _http._tcp
        service_type: Option<String>,
        /// How long to listen for answers, in seconds
        #[arg(long, default_value = "3")]
        timeout: f64,
    },
    /// Resolve a .local name on the LAN, like avahi-resolve
    Resolve {
        /// Record type (A, AAAA, PTR, SRV, TXT, ANY)
        #[arg(short = 't', long = "type", default_value = "A")]
        qtype: String,
        /// How long to wait for an answer, in seconds
        #[arg(long, default_value = "1")]
        timeout: f64,
        name: String,
    },
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
        /// Driver options: mtu=N (also com.docker.network.driver.mtu), allow_host_loopback=true (reach services on the host's 127.0.0.1 through host.containers.internal; off by default), mdns_resolve=false (`.local` names go to the unicast upstreams instead of mDNS)
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
        /// Publish the network's containers on the LAN by mDNS (NAME.NETWORK.local,
        /// NAME-NETWORK.local, NETWORK.local, and a DNS-SD service per published port)
        #[arg(long)]
        mdns: bool,
        /// Publish only on this host interface (repeatable; default: every LAN interface)
        #[arg(long = "mdns-interface", value_name = "IFACE", requires = "mdns")]
        mdns_interface: Vec<String>,
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
    pub all: bool,
    /// Only display container ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (name=, id=, status=, ancestor=, label=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Output format: table (default), json (one object a line) or a Go template ('table {{.Names}}\t{{.Status}}')
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Stop the per-user keeper process (it restarts on the next command)
    Migrate,
    /// Show disk usage of images, containers and volumes
    Df,
    /// Find inconsistencies between the database, the files and the kernel (exit 1 if any)
    Check {
        /// Fix each problem found and say what was done (exit 1 only if one could not be fixed)
        #[arg(short, long)]
        repair: bool,
        /// Print nothing; the exit status says
        #[arg(short, long)]
        quiet: bool,
        /// With --repair: remove unreferenced layers and blobs only when older than this
        /// (e.g. 0, 30s, 10m, 24h; a pull, load or import under way writes them first)
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
        unreferenced_data_age: std::time::Duration,
    },
}

/// A Go-style duration as Docker and podman take it: `0`, `90s`, `10m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {s:?}: a number with a unit (ms, s, m, h), e.g. 10m or 1h30m");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let (mut total, mut rest) = (0f64, s);
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += value * unit;
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
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
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Save images to an archive
    Save(SaveArgs),
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
    pub quiet: bool,
    /// Show full ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table (default), json (one object a line) or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Show registry digests
    #[arg(long)]
    pub digests: bool,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run the container in the background and print its id
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Bind mount a volume (SRC:DST[:ro])
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,...)
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTS])
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give all capabilities of the user namespace, no seccomp, no masked paths
    #[arg(long)]
    pub privileged: bool,
    /// Security options (seccomp=unconfined|FILE, no-new-privileges[=false])
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Memory limit (e.g. 64m)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap, -1 for unlimited
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Network: a network name (default: "cove"), several comma-separated, none, host, or container:NAME
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long = "ulimit")]
    pub ulimit: Vec<String>,
    /// Set metadata on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl")]
    pub sysctl: Vec<String>,
    /// Restart policy (no, always, unless-stopped, on-failure[:N])
    #[arg(long)]
    pub restart: Option<String>,
    /// Log driver options (max-size=10m, max-file=3)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Run cove's init as PID 1 (reaps zombies, forwards signals); --init=false to disable
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub init: Option<bool>,
    /// Where HOME lives in the container for the user (a private, writable directory)
    #[arg(long = "user-home")]
    pub user_home: Option<String>,
    /// Add a network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address of the container on its network (e.g. 10.90.1.50)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address of the container on its network (an --ipv6 network)
    #[arg(long)]
    pub ip6: Option<String>,
    /// MAC address of the container's interface on its (first) network
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip; ip may be host-gateway, the host's address)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers (on a cove network: where its DNS forwards this container's queries)
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains ("." for none)
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options (resolv.conf "options", e.g. ndots:2)
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/udp])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Expose a port or a range of ports (PORT[-END][/PROTO]); -P publishes them
    #[arg(long)]
    pub expose: Vec<String>,
    /// Publish all exposed ports to random host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Pull the image: missing (default), always, never
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Image to run
    pub image: String,
    /// Command and arguments
    #[arg(allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    pub fn into_request(self) -> RunRequest {
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

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// Suppress progress output; print only the image name
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull the image for this platform (os/arch[/variant]) instead of the host's
    #[arg(long)]
    pub platform: Option<String>,
    /// Verify TLS certificates (false: also allow plain HTTP)
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Image to pull (NAME[:TAG] or NAME@DIGEST)
    pub image: String,
}

#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Local image
    pub image: String,
    /// Where to push it (default: the image's own name)
    pub destination: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Registry (default: docker.io)
    pub registry: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (default) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
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
        let enters =
            |args: &[&str]| super::Cli::try_parse_from([&["cove"], args].concat()).unwrap().command.enters_containers();
        assert!(enters(&["run", "--rm", "--init", "bb", "true"]));
        assert!(!enters(&["run", "--rm", "--init=false", "bb", "true"]));
        assert!(!enters(&["run", "-d", "--init", "bb", "true"]), "the monitor seals itself");
        assert!(enters(&["exec", "c", "true"]));
        assert!(!enters(&["ps"]));
        assert!(!enters(&["start", "c"]));
    }
}
