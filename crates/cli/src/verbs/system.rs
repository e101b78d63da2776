//! System verbs: info, inspect (of any kind of object), system df, system migrate, login,
//! logout.

use crate::args::LoginArgs;
use crate::docker::human_size;
use crate::format::{inspect_template, print_inspected};
use anyhow::{anyhow, bail, Context, Result};
use cove_engine::distribution;
use cove_engine::run::Engine;
use cove_engine::{images, lifecycle, Dirs};
use std::io::{IsTerminal, Read};

/// `system migrate`: stops the per-user helpers (the network helper, the keeper); runs before
/// the engine is opened.
pub fn migrate() -> Result<i32> {
    let dirs = Dirs::for_current_user()?;
    cove_engine::netd::stop(&dirs.run);
    cove_runtime::userns::stop_keeper(&dirs.run);
    Ok(0)
}

pub fn info(eng: &Engine, mapping: Option<&cove_runtime::userns::IdMapping>, format: Option<&str>) -> Result<i32> {
    let v = cove_engine::info::report(&eng.dirs, mapping);
    if format == Some("json") || format == Some("{{json .}}") {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_info(&v);
    }
    Ok(0)
}

pub fn inspect(eng: &mut Engine, names: &[String], kind: Option<&str>, format: Option<&str>) -> Result<i32> {
    let tmpl = inspect_template(format)?;
    lifecycle::reconcile(eng)?;
    let mut out = vec![];
    let mut failed = false;
    for n in names {
        let found = match kind {
            Some("image") => images::resolve(&eng.db, n)
                .and_then(|i| Ok(crate::docker::image_json(&i, &eng.db.tags()?)))
                .map_err(anyhow::Error::from),
            Some("container") => eng
                .db
                .find_container(n)
                .map_err(anyhow::Error::from)
                .and_then(|c| crate::docker::container_json(eng, &c)),
            None => match eng.db.find_container(n) {
                Ok(c) => crate::docker::container_json(eng, &c),
                Err(_) => images::resolve(&eng.db, n)
                    .and_then(|i| Ok(crate::docker::image_json(&i, &eng.db.tags()?)))
                    .map_err(|_| anyhow!("no such object: {n}")),
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

/// `cove login`: runs before the engine is opened (no user namespace needed).
pub fn login(a: &LoginArgs, rootless: bool) -> Result<i32> {
    let registry = distribution::normalize_registry(a.registry.as_deref().unwrap_or(cove_registry::DOCKER_HUB));
    let username = match &a.username {
        Some(u) => u.clone(),
        None if std::io::stdin().is_terminal() && !a.password_stdin => {
            eprint!("Username: ");
            let mut u = String::new();
            std::io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
        None => bail!("login: --username is required when standard input is not a terminal"),
    };
    if username.is_empty() {
        bail!("login: the user name is empty");
    }
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("login: --password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().take(64 * 1024).read_to_string(&mut p).context("read password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("login: give the password with --password-stdin (or --password)"),
    };
    if password.is_empty() {
        bail!("login: the password is empty");
    }
    let creds = cove_registry::auth::Credentials { username, password };
    let file = distribution::login(&registry, creds, rootless, a.tls_verify)?;
    tracing::debug!(file = %file.display(), "credentials stored");
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(registry: Option<&str>) -> Result<i32> {
    let registry = distribution::normalize_registry(registry.unwrap_or(cove_registry::DOCKER_HUB));
    if distribution::logout(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

/// `system check [--repair] [--quiet] [--unreferenced-data-age D]`: one line per problem (exit 1
/// if any); with `--repair`, one line per fix (exit 1 only if one failed or was left).
pub fn check(eng: &mut Engine, repair: bool, quiet: bool, min_age: std::time::Duration) -> Result<i32> {
    let found = cove_engine::check::check(eng)?;
    let mut failed = false;
    for p in &found {
        if !repair {
            if !quiet {
                println!("{p}");
            }
            continue;
        }
        match cove_engine::check::repair(eng, p, min_age) {
            Ok(done) if !quiet => println!("repaired: {done}"),
            Ok(_) => {}
            Err(e) => {
                failed = true;
                if !quiet {
                    println!("not repaired: {p}: {e}");
                }
            }
        }
    }
    Ok(i32::from(if repair { failed } else { !found.is_empty() }))
}

pub fn df(eng: &Engine) -> Result<i32> {
    println!("{:<16}{:<8}{:<8}{:<12}RECLAIMABLE", "TYPE", "TOTAL", "ACTIVE", "SIZE");
    for r in distribution::df(eng)? {
        let pct = (r.reclaimable * 100).checked_div(r.size).map(|p| format!(" ({p}%)")).unwrap_or_default();
        println!(
            "{:<16}{:<8}{:<8}{:<12}{}{pct}",
            r.kind,
            r.total,
            r.active,
            human_size(r.size as i64),
            human_size(r.reclaimable as i64)
        );
    }
    Ok(0)
}

fn print_info(v: &serde_json::Value) {
    let s = |p: &str| {
        v.pointer(p)
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                o => o.to_string(),
            })
            .unwrap_or_else(|| "-".into())
    };
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
    println!(
        "Cgroups: {} hierarchy, limits {}",
        s("/Cgroups/Hierarchy"),
        if v.pointer("/Cgroups/Usable") == Some(&serde_json::Value::Bool(true)) { "applied" } else { "not applied" }
    );
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
