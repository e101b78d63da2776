//! End-to-end registry tests (L3): a real registry (Debian's `docker-registry`) started by
//! each test on 127.0.0.1 with a free port and its own storage, ended by PID. Images get
//! there with `cove push` and with `skopeo copy`. Network traffic goes to 127.0.0.1 only.
//! Same conventions as e2e.rs: `COVE_BIN`, `COVE_TEST_ROOTFS`, `COVE_TEST_TMP`, `SKIP:`
//! lines, `COVE_REQUIRE_ALL=1`.

mod common;

use common::{bin, skip, stdout_of_success, tmp_base};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// A registry on 127.0.0.1 with its own storage; killed (by PID) on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    fn start(htpasswd: Option<(&str, &str)>) -> Option<Registry> {
        let Some(exe) = tool("docker-registry") else {
            skip("docker-registry not installed (apt-get install docker-registry)");
            return None;
        };
        if tool("skopeo").is_none() {
            skip("skopeo not installed");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("cove-reg-").tempdir_in(tmp_base()).expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut auth = String::new();
        if let Some((u, p)) = htpasswd {
            let Some(h) = tool("htpasswd") else {
                skip("htpasswd not installed (apache2-utils)");
                return None;
            };
            let out = Command::new(h).args(["-Bbn", u, p]).output().unwrap();
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: cove-test\n    path: {}/htpasswd\n", dir.path().display());
        }
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/storage\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
        let mut r = Registry { dir, port, child: None };
        let _ = exe;
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let child = Command::new(tool("docker-registry").unwrap())
            .args(["serve", self.dir.path().join("config.yml").to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "registry did not start: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join(format!("storage/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    fn skopeo(&self, args: &[&str]) -> String {
        let o = Command::new("skopeo").args(args).output().expect("skopeo");
        assert!(o.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The manifest's layer digests (through skopeo, so cove is not testing itself).
    fn layers(&self, image: &str) -> Vec<String> {
        let raw =
            self.skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/{image}", self.host())]);
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        v["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One cove state tree (and credentials dir).
struct World {
    root: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let root = tempfile::Builder::new().prefix("cove-regw-").tempdir_in(tmp_base()).expect("tempdir");
        std::fs::create_dir_all(root.path().join("xdg")).unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        World { root }
    }

    /// A world with the busybox test image imported as `bb`.
    fn with_bb() -> Option<World> {
        let Some(fs) = std::env::var_os("COVE_TEST_ROOTFS").map(PathBuf::from).filter(|p| p.exists()) else {
            skip("COVE_TEST_ROOTFS not set (run scripts/make-rootfs.sh and export it)");
            return None;
        };
        let w = World::new();
        w.ok(&["import", fs.to_str().unwrap(), "bb", "--change", "CMD [\"sh\"]"]);
        Some(w)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("COVE_ROOT", self.root.path().join("cove"))
            .env("COVE_CONFIG", self.root.path().join("cove.conf"))
            .env("XDG_RUNTIME_DIR", self.root.path().join("xdg"))
            .env("HOME", self.root.path().join("home"))
            .env("COVE_KEEPER_IDLE_SECS", "3")
            .env("COVE_NETD_IDLE_SECS", "2")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        c
    }

    fn cove(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cove")
    }

    fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, self.cove(args))
    }

    /// Runs, expects failure with exactly one `cove: error:` line; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.cove(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "cove {args:?} succeeded: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains(" INFO ") && !l.contains(" DEBUG ")).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        assert!(lines[0].starts_with("cove: error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        lines[0].to_string()
    }

    fn image_ids(&self) -> Vec<String> {
        self.ok(&["images", "-q"]).lines().map(String::from).collect()
    }

    fn path(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.cmd(&["system", "migrate"]).output();
    }
}

/// A docker-archive built by hand: the busybox rootfs as its first layer, then one layer
/// per `(file name, content)`.
fn multi_layer_archive(path: &Path, layers: &[(&str, Vec<u8>)]) -> bool {
    let Some(rootfs) = std::env::var_os("COVE_TEST_ROOTFS").map(PathBuf::from).filter(|p| p.exists()) else {
        skip("COVE_TEST_ROOTFS not set (run scripts/make-rootfs.sh and export it)");
        return false;
    };
    let base = std::fs::read(rootfs).unwrap();
    use sha2::{Digest, Sha256};
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut diff_ids = vec![];
    let mut names = vec![];
    let add = |out: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        out.append_data(&mut h, name, data).unwrap();
    };
    {
        let hex = hex::encode(Sha256::digest(&base));
        add(&mut out, &format!("{hex}.tar"), &base);
        diff_ids.push(format!("sha256:{hex}"));
        names.push(format!("{hex}.tar"));
    }
    for (file, content) in layers {
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        layer.append_data(&mut h, file, &content[..]).unwrap();
        let bytes = layer.into_inner().unwrap();
        let hex = hex::encode(Sha256::digest(&bytes));
        add(&mut out, &format!("{hex}.tar"), &bytes);
        diff_ids.push(format!("sha256:{hex}"));
        names.push(format!("{hex}.tar"));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let cbytes = serde_json::to_vec(&config).unwrap();
    let chex = hex::encode(Sha256::digest(&cbytes));
    add(&mut out, &format!("{chex}.json"), &cbytes);
    let manifest = serde_json::json!([{"Config": format!("{chex}.json"), "RepoTags": ["multi:1"], "Layers": names}]);
    add(&mut out, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    out.into_inner().unwrap().flush().unwrap();
    true
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom").map(|mut f| std::io::Read::read_exact(&mut f, &mut v)).unwrap().unwrap();
    v
}

#[test]
fn push_pull_run_and_digests() {
    let Some(reg) = Registry::start(None) else { return };
    let Some(a) = World::with_bb() else { return };
    let dest = format!("{}/team/bb:1", reg.host());
    let out = a.ok(&["push", "bb", &dest]);
    assert!(out.contains("digest: sha256:"), "{out}");

    let b = World::new();
    let out = b.ok(&["pull", "--tls-verify=false", &dest]);
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    let digest = out.lines().find_map(|l| l.strip_prefix("Digest: ")).unwrap().to_string();
    assert_eq!(b.ok(&["run", "--rm", &dest, "sh", "-c", "echo pulled"]), "pulled\n");
    // The same image id on both sides: the layer blob went up and came back unchanged.
    assert_eq!(a.image_ids(), b.image_ids());
    assert!(b.ok(&["images", "--digests"]).contains(&digest));
    // Again: nothing to download. By digest: the same image.
    assert!(b.ok(&["pull", &dest]).contains("Image is up to date"));
    let by_digest = format!("{}/team/bb@{digest}", reg.host());
    b.ok(&["pull", "-q", &by_digest]);
    assert_eq!(b.ok(&["run", "--rm", &by_digest, "echo", "by-digest"]), "by-digest\n");

    // run --pull: missing pulls, never refuses.
    let c = World::new();
    let err = c.fails(&["run", "--rm", "--pull=never", &dest, "true"]);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(c.ok(&["run", "--rm", "--pull=missing", &dest, "echo", "auto"]), "auto\n");
    assert_eq!(c.ok(&["run", "--rm", "--pull=always", &dest, "echo", "again"]), "again\n");

    // Short names resolve against default_registry; insecure_registries from the config file.
    std::fs::write(
        c.path().join("cove.conf"),
        format!("default_registry = {}\ninsecure_registries = {}\n", reg.host(), reg.host()),
    )
    .unwrap();
    c.ok(&["pull", "team/bb:1"]);
    assert_eq!(c.ok(&["run", "--rm", "team/bb:1", "echo", "short"]), "short\n");

    // Bad input: one line, no panic.
    let err = c.fails(&["pull", "Bad//Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = c.fails(&["pull", &format!("{}/team/nosuch:1", reg.host())]);
    assert!(err.contains("not found"), "{err}");
    let err = c.fails(&["pull", "--platform", "linux/s390x", &dest]);
    assert!(err.contains("s390x"), "{err}");
    let err = c.fails(&["push", "nosuchimage", &dest]);
    assert!(err.contains("not found"), "{err}");

    // Prune: untagged images go; system df answers.
    c.ok(&["rmi", "team/bb:1"]);
    let df = c.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE") && df.contains("Images"), "{df}");
    c.ok(&["image", "prune", "-a"]);
    assert!(c.image_ids().is_empty(), "{:?}", c.image_ids());
}

#[test]
fn archives_and_skopeo() {
    let Some(reg) = Registry::start(None) else { return };
    let Some(a) = World::with_bb() else { return };
    let docker_tar = a.path().join("bb-docker.tar");
    let oci_tar = a.path().join("bb-oci.tar");
    a.ok(&["save", "-o", docker_tar.to_str().unwrap(), "bb"]);
    a.ok(&["save", "--format", "oci-archive", "-o", oci_tar.to_str().unwrap(), "bb"]);

    // cove's archives load back into cove.
    for t in [&docker_tar, &oci_tar] {
        let b = World::new();
        let out = b.ok(&["load", "-i", t.to_str().unwrap()]);
        assert!(out.contains("bb:latest"), "{out}");
        assert_eq!(b.ok(&["run", "--rm", "bb", "echo", "loaded"]), "loaded\n");
        assert_eq!(a.image_ids(), b.image_ids());
    }
    // ... and skopeo reads both and pushes them; cove pulls what skopeo pushed.
    // (skopeo unpacks an oci-archive with chown to the entries' owner 0: root only.)
    let kinds: &[(&PathBuf, &str, &str)] = if nix::unistd::getuid().is_root() {
        &[(&docker_tar, "docker-archive", "sk/docker"), (&oci_tar, "oci-archive", "sk/oci")]
    } else {
        &[(&docker_tar, "docker-archive", "sk/docker")]
    };
    for &(t, kind, repo) in kinds {
        reg.skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("{kind}:{}", t.display()),
            &format!("docker://{}/{repo}:1", reg.host()),
        ]);
        let b = World::new();
        b.ok(&["pull", "--tls-verify=false", &format!("{}/{repo}:1", reg.host())]);
        assert_eq!(b.ok(&["run", "--rm", &format!("{}/{repo}:1", reg.host()), "echo", kind]), format!("{kind}\n"));
    }
    // zstd layers (skopeo compresses them).
    reg.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress-format=zstd",
        &format!("docker-archive:{}", docker_tar.display()),
        &format!("docker://{}/sk/zstd:1", reg.host()),
    ]);
    let b = World::new();
    b.ok(&["pull", &format!("{}/sk/zstd:1", reg.host())]);
    assert_eq!(b.ok(&["run", "--rm", &format!("{}/sk/zstd:1", reg.host()), "echo", "zstd"]), "zstd\n");
    let err = a.fails(&["save", "--format", "tarball", "-o", "/dev/null", "bb"]);
    assert!(err.contains("invalid --format"), "{err}");
}

#[test]
fn login_htpasswd_and_credentials_files() {
    let Some(reg) = Registry::start(Some(("alice", "s3cret"))) else { return };
    let Some(a) = World::with_bb() else { return };
    let dest = format!("{}/private/bb:1", reg.host());
    let err = a.fails(&["push", "bb", &dest]);
    assert!(err.contains("authentication required"), "{err}");

    let mut c = a.cmd(&["login", "-u", "alice", "--password-stdin", &reg.host()]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"wrong\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("access denied"), "{}", String::from_utf8_lossy(&o.stderr));

    let mut c = a.cmd(&["login", "-u", "alice", "--password-stdin", &reg.host()]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let auth = std::fs::read_to_string(a.path().join("xdg/containers/auth.json")).unwrap();
    assert!(auth.contains(&reg.host()), "{auth}");
    a.ok(&["push", "bb", &dest]);

    // Another user of the registry with credentials in ~/.docker/config.json.
    let b = World::new();
    assert!(b.fails(&["pull", &dest]).contains("authentication required"));
    std::fs::create_dir_all(b.path().join("home/.docker")).unwrap();
    std::fs::write(
        b.path().join("home/.docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#, reg.host()),
    )
    .unwrap();
    b.ok(&["pull", &dest]);
    assert_eq!(b.ok(&["run", "--rm", &dest, "echo", "authed"]), "authed\n");

    a.ok(&["logout", &reg.host()]);
    assert!(!std::fs::read_to_string(a.path().join("xdg/containers/auth.json")).unwrap().contains(&reg.host()));
    assert!(a.fails(&["push", "bb", &dest]).contains("authentication required"));
}

/// Tampered, truncated and wrongly typed content fails with one clear line and leaves no
/// image; the next pull reuses the layers that were verified.
#[test]
fn hostile_content_and_resume() {
    let Some(reg) = Registry::start(None) else { return };
    let w = World::new();
    let archive = w.path().join("multi.tar");
    if !multi_layer_archive(
        &archive,
        &[("a", b"layer one\n".repeat(1000)), ("b", b"layer two\n".repeat(1000)), ("c", random_bytes(200_000))],
    ) {
        return;
    }
    reg.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}/multi:1", reg.host()),
    ]);
    let image = format!("{}/multi:1", reg.host());
    let layers = reg.layers("multi:1");
    assert_eq!(layers.len(), 4);

    // Tampered: same size, different bytes.
    let third = reg.blob_file(&layers[3]);
    let original = std::fs::read(&third).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&third, &bad).unwrap();
    let err = w.fails(&["pull", &image]);
    assert!(err.contains("digest mismatch") && err.contains(&layers[3]), "{err}");
    assert!(w.image_ids().is_empty());

    // Truncated.
    std::fs::write(&third, &original[..original.len() / 2]).unwrap();
    let err = w.fails(&["pull", &image]);
    assert!(err.contains(&format!("the manifest says {}", original.len())), "{err}");
    assert!(w.image_ids().is_empty());

    // Restored: the three verified layers are reused, only the last is fetched.
    std::fs::write(&third, &original).unwrap();
    let o = w.cmd(&["pull", &image]).env("COVE_LOG", "info").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(&o.stderr);
    assert_eq!(log.matches("layer reused").count(), 3, "{log}");
    assert_eq!(w.ok(&["run", "--rm", &image, "sh", "-c", "cat /a | wc -l; cat /b | wc -l"]), "1000\n1000\n");

    // A manifest whose layer has a media type no image has.
    let mut m: serde_json::Value =
        serde_json::from_str(&reg.skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")]))
            .unwrap();
    m["layers"][0]["mediaType"] = "application/vnd.example.not-a-layer".into();
    let path = w.path().join("bad-manifest.json");
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let ct = m["mediaType"].as_str().unwrap().to_string();
    let o = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {ct}"),
            "--data-binary",
            &format!("@{}", path.display()),
            &format!("http://{}/v2/multi/manifests/weird", reg.host()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "put manifest: {}", String::from_utf8_lossy(&o.stderr));
    let fresh = World::new();
    let err = fresh.fails(&["pull", &format!("{}/multi:weird", reg.host())]);
    assert!(err.contains("application/vnd.example.not-a-layer"), "{err}");
    assert!(fresh.image_ids().is_empty());
}

/// The registry dies in the middle of a pull: a clear error, no image; after a restart the
/// pull completes and reuses the layers verified before.
#[test]
fn registry_down_mid_pull_then_resume() {
    let Some(mut reg) = Registry::start(None) else { return };
    let w = World::new();
    let archive = w.path().join("big.tar");
    if !multi_layer_archive(
        &archive,
        &[("small1", b"one\n".repeat(100)), ("small2", b"two\n".repeat(100)), ("big", random_bytes(96 << 20))],
    ) {
        return;
    }
    reg.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}/big:1", reg.host()),
    ]);
    let image = format!("{}/big:1", reg.host());

    // Over loopback the whole big layer may already be on its way (socket buffers) when the
    // registry dies: then the pull wins the race. Try again with a fresh state (at most 3 times).
    let mut attempt = 0;
    let mut first = Some(w);
    let (w, o) = loop {
        attempt += 1;
        let w = first.take().unwrap_or_else(World::new);
        let mut pull = w.cmd(&["pull", &image]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        // Kill the registry once the big layer is partly downloaded (a staging blob has data).
        let tmp = w.path().join("cove/data/storage/tmp");
        let t = Instant::now();
        loop {
            // The three small layers are in place (a layer dir each) and the big one is under way.
            let small_done =
                std::fs::read_dir(w.path().join("cove/data/storage/layers")).map(|rd| rd.count() >= 3).unwrap_or(false);
            let partial = small_done
                && std::fs::read_dir(&tmp)
                    .map(|rd| {
                        rd.flatten().any(|e| {
                            e.file_name().to_string_lossy().starts_with("blob-")
                                && e.metadata().is_ok_and(|m| m.len() > (1 << 20))
                        })
                    })
                    .unwrap_or(false);
            if partial {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "pull never started downloading");
            if let Ok(Some(status)) = pull.try_wait() {
                assert!(status.success() && attempt < 3, "pull ended before the registry was stopped: {status:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        reg.stop();
        let o = pull.wait_with_output().unwrap();
        if o.status.success() && attempt < 3 {
            println!("note: attempt {attempt}: the pull finished before the registry died; again");
            reg.spawn();
            continue;
        }
        break (w, o);
    };
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("cove: error: "), "{err}");
    assert!(w.image_ids().is_empty());

    reg.spawn();
    let o = w.cmd(&["pull", &image]).env("COVE_LOG", "info").output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert_eq!(log.matches("layer reused").count(), 3, "{log}");
    assert_eq!(w.ok(&["run", "--rm", &image, "cat", "/small2"]), "two\n".repeat(100));
}
