//! Running the verbs: opening the engine (after the user namespace, when rootless), then one
//! function per verb, grouped as Docker groups them: containers, images (with registries and
//! archives), networks (with their DNS), the system (info, inspect, df, login).

mod container;
mod image;
mod network;
mod system;

use crate::args::{Cli, Command, ContainerCmd, DnsCmd, ImageCmd, MdnsCmd, NetworkCmd, SystemCmd};
use anyhow::{Context, Result};
use cove_engine::run::Engine;
use cove_engine::{lifecycle, Dirs};
use cove_runtime::userns::IdMapping;

/// Prepares the process: directories, then (rootless) the user namespace, then the engine.
fn open_engine(dirs: Dirs) -> Result<(Engine, Option<IdMapping>)> {
    let mapping = enter_userns(&dirs)?;
    tracing::debug!("in the user namespace");
    let eng = Engine::open(dirs)?;
    tracing::debug!("engine open");
    Ok((eng, mapping))
}

fn enter_userns(dirs: &Dirs) -> Result<Option<IdMapping>> {
    if !dirs.rootless {
        return Ok(None);
    }
    let mapping = cove_runtime::userns::plan_mapping(
        nix::unistd::Uid::from_raw(dirs.uid),
        nix::unistd::Gid::from_raw(dirs.gid),
        &dirs.user_name,
    );
    cove_runtime::userns::join_keeper(&dirs.run, &mapping).context("cannot enter the rootless user namespace")?;
    Ok(Some(mapping))
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    // Commands that must not start anything.
    if let Command::Login(a) = &cli.command {
        return system::login(a, !nix::unistd::getuid().is_root());
    }
    if let Command::Logout { registry } = &cli.command {
        return system::logout(registry.as_deref());
    }
    if let Command::System(SystemCmd::Migrate) = &cli.command {
        return system::migrate();
    }
    let dirs = Dirs::for_current_user()?;
    let (eng, mapping) = open_engine(dirs)?;
    // The process exits right after this command: skip the database's close-time WAL
    // checkpoint (two fsyncs and an unlink on every command); the WAL stays valid and the
    // next command reuses it. SQLite checkpoints on its own as the WAL grows.
    // It keeps the WAL short instead ([`cove_engine::db::Db::settle`]).
    let mut eng = std::mem::ManuallyDrop::new(eng);
    let eng = &mut *eng;
    let r = run_command(cli.command, eng, mapping);
    eng.db.settle();
    r
}

fn run_command(command: Command, eng: &mut Engine, mapping: Option<IdMapping>) -> Result<i32> {
    match command {
        Command::Run(args) => container::run(eng, args),
        Command::Create(args) => container::create(eng, args),
        Command::Start { attach, containers } => container::start(eng, attach, &containers),
        Command::Stop { time, containers } => each(&containers, |c| lifecycle::stop(eng, c, time)),
        Command::Restart { time, containers } => each(&containers, |c| {
            lifecycle::stop(eng, c, time)?;
            lifecycle::start(eng, c).map(|_| ())
        }),
        Command::Kill { signal, containers } => {
            let sig = lifecycle::parse_signal(&signal)?;
            each(&containers, |c| lifecycle::kill(eng, c, sig).map(|_| ()))
        }
        Command::Wait { containers } => container::wait(eng, &containers),
        Command::Logs { follow, tail, since, until, timestamps, container } => {
            container::logs(eng, &container, follow, tail, since, until, timestamps)
        }
        Command::Exec(a) => container::exec(eng, a),
        Command::Attach { container } => Ok(lifecycle::attach(eng, &container)? as i32),
        Command::Port { container, port } => container::port(eng, &container, port),
        Command::Top { container } => container::top(eng, &container),
        Command::Container(ContainerCmd::Prune { force: _ }) => container::prune(eng),
        Command::Container(ContainerCmd::Ls(a)) | Command::Ps(a) => container::ps(eng, &a),
        Command::Rm { force, containers } => container::remove(eng, force, &containers),
        Command::Network(NetworkCmd::Create {
            subnet,
            gateway,
            ipv6,
            internal,
            driver,
            label,
            opt,
            dns,
            ip_range,
            aux_address,
            mdns,
            mdns_interface,
            name,
        }) => network::create(
            eng,
            &name,
            &driver,
            subnet,
            gateway,
            cove_engine::network::CreateOptions {
                internal,
                ipv6,
                labels: label,
                options: opt,
                dns,
                ip_ranges: ip_range,
                aux_addresses: aux_address,
                mdns,
                mdns_interfaces: mdns_interface,
                ..Default::default()
            },
        ),
        Command::Network(NetworkCmd::Ls { quiet, filter, format }) => {
            network::list(eng, quiet, &filter, format.as_deref())
        }
        Command::Network(NetworkCmd::Inspect { networks, format }) => {
            network::inspect(eng, &networks, format.as_deref())
        }
        Command::Dns(DnsCmd::Resolve { qtype, network, name }) => {
            network::resolve(eng, &name, &qtype, network.as_deref())
        }
        Command::Mdns(MdnsCmd::Ls) => network::mdns_ls(eng),
        Command::Mdns(MdnsCmd::Browse { service_type, timeout }) => {
            network::mdns_browse(eng, service_type.as_deref(), seconds(timeout)?)
        }
        Command::Mdns(MdnsCmd::Resolve { qtype, timeout, name }) => {
            network::mdns_resolve(eng, &name, &qtype, seconds(timeout)?)
        }
        Command::Network(NetworkCmd::Connect { alias, ip, ip6, network, container }) => {
            network::connect(eng, &network, &container, &alias, ip.as_deref(), ip6.as_deref())
        }
        Command::Network(NetworkCmd::Disconnect { force: _, network, container }) => {
            cove_engine::network::disconnect(eng, &network, &container)?;
            Ok(0)
        }
        Command::Network(NetworkCmd::Rm { networks }) => {
            each(&networks, |n| cove_engine::network::remove(eng, n).map(|_| ()))
        }
        Command::Network(NetworkCmd::Prune { force: _, filter }) => network::prune(eng, &filter),
        Command::Import { file, reference, change, quiet: _ }
        | Command::Image(ImageCmd::Import { file, reference, change }) => {
            image::import(eng, &file, reference.as_deref(), &change)
        }
        Command::Load { input, quiet } => image::load(eng, input, quiet),
        Command::Image(ImageCmd::Load { input }) => image::load(eng, input, false),
        Command::Images(a) | Command::Image(ImageCmd::Ls(a)) => image::list(eng, &a),
        Command::Image(ImageCmd::Inspect { images: names, format }) => {
            system::inspect(eng, &names, Some("image"), format.as_deref())
        }
        Command::Inspect { names, kind, format } => system::inspect(eng, &names, kind.as_deref(), format.as_deref()),
        Command::Tag { source, target } | Command::Image(ImageCmd::Tag { source, target }) => {
            cove_engine::images::tag(&mut eng.db, &source, &target)?;
            Ok(0)
        }
        Command::Rmi { force, images: names } | Command::Image(ImageCmd::Rm { force, images: names }) => {
            image::remove(eng, force, &names)
        }
        Command::Info { format } => system::info(eng, mapping.as_ref(), format.as_deref()),
        Command::Pull(a) | Command::Image(ImageCmd::Pull(a)) => image::pull(eng, &a),
        Command::Push(a) | Command::Image(ImageCmd::Push(a)) => image::push(eng, &a),
        Command::Save(a) | Command::Image(ImageCmd::Save(a)) => image::save(eng, &a),
        Command::Image(ImageCmd::Prune { all, force: _ }) => image::prune(eng, all),
        Command::System(SystemCmd::Df) => system::df(eng),
        Command::System(SystemCmd::Check { repair, quiet, unreferenced_data_age }) => {
            system::check(eng, repair, quiet, unreferenced_data_age)
        }
        Command::System(_) | Command::Login(_) | Command::Logout { .. } => Ok(0),
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

/// A `--timeout` in seconds: positive and at most a minute.
fn seconds(s: f64) -> Result<std::time::Duration> {
    if !(s.is_finite() && s > 0.0 && s <= 60.0) {
        anyhow::bail!("invalid --timeout {s}: seconds, more than 0 and at most 60");
    }
    Ok(std::time::Duration::from_secs_f64(s))
}
