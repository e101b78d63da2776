//! Image verbs: images, tag, rmi, import, load, save, image prune, and the registry's pull and
//! push (`run --pull` too). Progress bars (one per layer) only on a terminal and without `-q`.

use crate::args::{ImagesArgs, PullArgs, PushArgs, SaveArgs};
use crate::docker::human_size;
use crate::format::ListFormat;
use anyhow::{bail, Context, Result};
use cove_engine::distribution::{self, Event, RegistryOptions};
use cove_engine::images;
use cove_engine::run::Engine;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

pub fn import(eng: &mut Engine, file: &str, reference: Option<&str>, change: &[String]) -> Result<i32> {
    let opts = eng.unpack_options();
    let id = if file == "-" {
        images::import(&mut eng.db, &eng.store, std::io::stdin().lock(), reference, change, &opts)?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("open {file}"))?;
        images::import(&mut eng.db, &eng.store, std::io::BufReader::new(f), reference, change, &opts)?
    };
    println!("{id}");
    Ok(0)
}

pub fn remove(eng: &mut Engine, force: bool, names: &[String]) -> Result<i32> {
    let mut failed = false;
    for n in names {
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

pub fn load(eng: &mut Engine, input: Option<PathBuf>, quiet: bool) -> Result<i32> {
    let opts = eng.unpack_options();
    // `load` without -i reads stdin: spool it to a file (archives need random access).
    let (path, _tmp) = match input {
        Some(p) => (p, None),
        None => {
            let d = eng.dirs.storage().join("tmp");
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
            let mut tmp = tempfile::Builder::new()
                .prefix("stdin-")
                .suffix(".tar")
                .tempfile_in(&d)
                .with_context(|| format!("create a file in {}", d.display()))?;
            std::io::copy(&mut std::io::stdin().lock(), tmp.as_file_mut()).context("read image archive from stdin")?;
            (tmp.path().to_path_buf(), Some(tmp.into_temp_path()))
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

pub fn list(eng: &Engine, a: &ImagesArgs) -> Result<i32> {
    let format = ListFormat::parse(a.format.as_deref())?;
    let imgs = eng.db.images()?;
    let tags = eng.db.tags()?;
    if a.quiet {
        for i in &imgs {
            println!("{}", if a.no_trunc { i.id.as_str() } else { cove_oci::short_id(&i.id) });
        }
        return Ok(0);
    }
    let data: Vec<serde_json::Value> =
        imgs.iter().flat_map(|i| crate::docker::image_rows(i, &tags, a.no_trunc)).collect();
    let headers = [
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
    ];
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

/// Per-layer bars on a terminal; nothing otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verb: &'static str,
}

impl Bars {
    fn new(quiet: bool, verb: &'static str) -> Bars {
        let on = !quiet && std::io::stderr().is_terminal();
        Bars {
            multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            verb,
        }
    }

    fn event(&self, e: Event) {
        let Some(multi) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else { return };
        match e {
            Event::Layer { digest, size } => {
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg:<14} [{bar:30}] {bytes}/{total_bytes}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
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
                    b.finish_with_message(if reused {
                        "Already exists"
                    } else if self.verb == "Pushing" {
                        "Pushed"
                    } else {
                        "Pull complete"
                    });
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
    let present = || images::resolve(&eng.db, image).is_ok();
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
            let tmp = tempfile::Builder::new()
                .prefix(".cove-save-")
                .tempfile_in(dir)
                .with_context(|| format!("create a file in {}", dir.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
            distribution::save(eng, &a.images, format, &mut w)?;
            w.flush().with_context(|| format!("write {}", path.display()))?;
            drop(w);
            tmp.persist(path).with_context(|| format!("write {}", path.display()))?;
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

pub fn prune(eng: &mut Engine, all: bool) -> Result<i32> {
    let (removed, bytes) = distribution::prune(eng, all, std::time::Duration::from_secs(600))?;
    if !removed.is_empty() {
        println!("Deleted Images:");
        for id in &removed {
            println!("deleted: {id}");
        }
    }
    println!("Total reclaimed space: {}", human_size(bytes as i64));
    Ok(0)
}
