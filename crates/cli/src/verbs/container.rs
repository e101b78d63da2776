//! Container verbs: run, create, start, wait, logs, exec, port, top, ps, rm, container prune
//! (stop, restart, kill and attach are one engine call each: see `verbs`).

use crate::args::{ExecArgs, PsArgs, RunArgs};
use crate::format::ListFormat;
use anyhow::{anyhow, bail, Result};
use cove_engine::db::ContainerState;
use cove_engine::lifecycle;
use cove_engine::run::Engine;
use std::io::Write;

pub fn run(eng: &mut Engine, args: RunArgs) -> Result<i32> {
    if args.tty && args.interactive && !args.detach && !stdin_is_a_tty() {
        return Ok(not_a_tty());
    }
    super::image::pull_for_run(eng, &args.image, &args.pull)?;
    let req = args.into_request();
    if req.detach {
        let id = lifecycle::run_detached(eng, &req)?;
        println!("{id}");
        return Ok(0);
    }
    Ok(cove_engine::run::run(eng, &req)?)
}

pub fn create(eng: &mut Engine, args: RunArgs) -> Result<i32> {
    super::image::pull_for_run(eng, &args.image, &args.pull)?;
    let req = args.into_request();
    println!("{}", lifecycle::create(eng, &req)?);
    Ok(0)
}

pub fn start(eng: &mut Engine, attach: bool, containers: &[String]) -> Result<i32> {
    let mut failed = false;
    for c in containers {
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

pub fn wait(eng: &mut Engine, containers: &[String]) -> Result<i32> {
    let mut failed = false;
    for c in containers {
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

pub fn logs(
    eng: &mut Engine,
    container: &str,
    follow: bool,
    tail: Option<String>,
    since: Option<String>,
    until: Option<String>,
    timestamps: bool,
) -> Result<i32> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
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
    lifecycle::logs(eng, container, &o, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
    Ok(0)
}

pub fn exec(eng: &mut Engine, a: ExecArgs) -> Result<i32> {
    if a.tty && a.interactive && !stdin_is_a_tty() {
        return Ok(not_a_tty());
    }
    let o = lifecycle::ExecOptions {
        args: a.command,
        user: a.user,
        workdir: a.workdir,
        env: a.env,
        tty: a.tty,
        interactive: a.interactive,
        privileged: a.privileged,
    };
    Ok(lifecycle::exec(eng, &a.container, &o)?)
}

pub fn port(eng: &mut Engine, container: &str, port: Option<String>) -> Result<i32> {
    let c = eng.db.find_container(container)?;
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

pub fn top(eng: &mut Engine, container: &str) -> Result<i32> {
    let rows = lifecycle::top(eng, container)?;
    println!("{:<10} {:<10} {:<10} CMD", "PID", "UID", "TIME");
    for r in rows {
        println!("{:<10} {:<10} {:<10} {}", r[0], r[1], r[2], r[3]);
    }
    Ok(0)
}

pub fn prune(eng: &mut Engine) -> Result<i32> {
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

pub fn remove(eng: &mut Engine, force: bool, containers: &[String]) -> Result<i32> {
    let mut failed = false;
    for c in containers {
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

pub fn ps(eng: &mut Engine, a: &PsArgs) -> Result<i32> {
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
    // Only the rows shown are decoded (a corrupt one is an error naming it).
    let rows = eng
        .db
        .containers()?
        .into_iter()
        .filter(|c| show_all || c.state == ContainerState::Running)
        .map(|c| c.request().map(|r| (c, r)))
        .collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(c, req)| {
            filters.iter().all(|(k, v)| match k.as_str() {
                "name" => c.name.contains(v.as_str()),
                "id" => c.id.starts_with(v.as_str()),
                "status" => c.state.as_str() == v,
                "ancestor" => c.image == *v || c.image_id.contains(v.as_str()),
                "exited" => c.state == ContainerState::Exited && c.exit_code.map(|x| x.to_string()) == Some(v.clone()),
                "label" => req.labels.iter().any(|l| l == v || l.split('=').next() == Some(v.as_str())),
                _ => true,
            })
        })
        .collect();
    let format = ListFormat::parse(a.format.as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for (c, _) in &rows {
            writeln!(out, "{}", if a.no_trunc { c.id.as_str() } else { cove_oci::short_id(&c.id) })?;
        }
        return Ok(0);
    }
    let data: Vec<serde_json::Value> =
        rows.iter().map(|(c, req)| crate::docker::ps_row(eng, c, req, a.no_trunc)).collect();
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
        ("Networks", "NETWORKS"),
    ];
    format.print(&data, &headers, || {
        let mut table =
            crate::table::Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]);
        for d in &data {
            let f = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            table.row(vec![f("ID"), f("Image"), f("Command"), f("RunningFor"), f("Status"), f("Ports"), f("Names")]);
        }
        table.write(&mut out)?;
        Ok(())
    })?;
    Ok(0)
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
