//! Registry and archive verbs: pull, push, login, logout, save, image prune, system df;
//! `run --pull`. Progress bars (one per layer) only on a terminal and without `-q`.

use anyhow::{bail, Context, Result};
use clap::Args;
use cove_engine::distribution::{self, Event, RegistryOptions};
use cove_engine::run::Engine;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

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

/// Per-layer bars on a terminal; nothing otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verb: &'static str,
}

impl Bars {
    fn new(quiet: bool, verb: &'static str) -> Bars {
        let on = !quiet && std::io::stderr().is_terminal();
        Bars { multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())), bars: Mutex::new(HashMap::new()), verb }
    }

    fn event(&self, e: Event) {
        let Some(multi) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else { return };
        match e {
            Event::Layer { digest, size } => {
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(ProgressStyle::with_template("{prefix}: {msg:<14} [{bar:30}] {bytes}/{total_bytes}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
                bar.set_prefix(cove_oci::short_id(&digest).to_string());
                bar.set_message("Waiting");
                bars.insert(digest, bar);
            }
            Event::Bytes { digest, n } => {
                if let Some(b) = bars.get(&digest) {
                    b.set_message(self.verb);
                    b.inc(n);
                }
            }
            Event::Done { digest, reused } => {
                if let Some(b) = bars.get(&digest) {
                    let len = b.length().unwrap_or(0);
                    b.set_position(len);
                    b.finish_with_message(if reused { "Already exists" } else if self.verb == "Pushing" { "Pushed" } else { "Pull complete" });
                }
            }
        }
    }

    fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

pub fn pull(eng: &mut Engine, a: &PullArgs) -> Result<i32> {
    let bars = Bars::new(a.quiet, "Downloading");
    let opts = RegistryOptions { tls_verify: a.tls_verify, platform: a.platform.clone() };
    let res = distribution::pull(eng, &a.image, &opts, &|e| bars.event(e));
    if res.is_err() {
        bars.clear();
    }
    let p = res?;
    let full = distribution::parse_ref(&a.image, eng.dirs.rootless)?.to_string();
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(out, "Digest: {}", p.digest)?;
        if p.downloaded == 0 {
            writeln!(out, "Status: Image is up to date for {}", p.name)?;
        } else {
            writeln!(out, "Status: Downloaded newer image for {}", p.name)?;
        }
    }
    writeln!(out, "{full}")?;
    Ok(0)
}

/// `run`/`create --pull=missing|always|never`, before the container is prepared.
pub fn pull_for_run(eng: &mut Engine, image: &str, policy: &str) -> Result<()> {
    let present = || cove_engine::images::resolve(&eng.db, image).is_ok();
    let go = match policy {
        "never" => false,
        "missing" => !present(),
        "always" => true,
        other => bail!("invalid --pull {other:?}: missing, always or never"),
    };
    if !go {
        return Ok(());
    }
    if cove_oci::Reference::parse(image).is_err() {
        // An id prefix or a bad name: let `run` report it.
        return Ok(());
    }
    let bars = Bars::new(false, "Downloading");
    if bars.multi.is_some() || std::io::stderr().is_terminal() {
        eprintln!("Unable to find image '{image}' locally");
    }
    let res = distribution::pull(eng, image, &RegistryOptions::default(), &|e| bars.event(e));
    if res.is_err() {
        bars.clear();
    }
    let p = res?;
    if std::io::stderr().is_terminal() {
        eprintln!("Digest: {}\nStatus: Downloaded newer image for {}", p.digest, p.name);
    }
    Ok(())
}

pub fn push(eng: &mut Engine, a: &PushArgs) -> Result<i32> {
    let bars = Bars::new(a.quiet, "Pushing");
    let opts = RegistryOptions { tls_verify: a.tls_verify, platform: None };
    let res = distribution::push(eng, &a.image, a.destination.as_deref(), &opts, &|e| bars.event(e));
    if res.is_err() {
        bars.clear();
    }
    let digest = res?;
    if !a.quiet {
        let dest = a.destination.as_deref().unwrap_or(&a.image);
        println!("{dest}: digest: {digest}");
    }
    Ok(0)
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

pub fn save(eng: &Engine, a: &SaveArgs) -> Result<i32> {
    let format = match a.format.as_str() {
        "docker-archive" | "docker" => cove_image::ArchiveFormat::Docker,
        "oci-archive" | "oci" => cove_image::ArchiveFormat::Oci,
        other => bail!("invalid --format {other:?}: docker-archive or oci-archive"),
    };
    match &a.output {
        Some(path) => {
            // Written next to the destination and renamed: a failed save leaves no file.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let tmp = tempfile_named(dir)?;
            let f = std::fs::File::create(&tmp.0).with_context(|| format!("create {}", tmp.0.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            distribution::save(eng, &a.images, format, &mut w)?;
            w.flush().with_context(|| format!("write {}", path.display()))?;
            std::fs::rename(&tmp.0, path).with_context(|| format!("write {}", path.display()))?;
            std::mem::forget(tmp);
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to write an archive to a terminal: use -o FILE or redirect");
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            distribution::save(eng, &a.images, format, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_named(dir: &std::path::Path) -> Result<Tmp> {
    Ok(Tmp(dir.join(format!(".cove-save-{}", cove_oci::new_id()?))))
}

pub fn prune(eng: &mut Engine, all: bool) -> Result<i32> {
    let (removed, bytes) = distribution::prune(eng, all, std::time::Duration::from_secs(600))?;
    if !removed.is_empty() {
        println!("Deleted Images:");
        for id in &removed {
            println!("deleted: {id}");
        }
    }
    println!("Total reclaimed space: {}", crate::cmd::human_size(bytes as i64));
    Ok(0)
}

pub fn df(eng: &Engine) -> Result<i32> {
    println!("{:<16}{:<8}{:<8}{:<12}RECLAIMABLE", "TYPE", "TOTAL", "ACTIVE", "SIZE");
    for r in distribution::df(eng)? {
        let pct = (r.reclaimable * 100).checked_div(r.size).map(|p| format!(" ({p}%)")).unwrap_or_default();
        println!("{:<16}{:<8}{:<8}{:<12}{}{pct}", r.kind, r.total, r.active, crate::cmd::human_size(r.size as i64), crate::cmd::human_size(r.reclaimable as i64));
    }
    Ok(0)
}
