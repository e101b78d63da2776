//! `load`: docker-archive (legacy and blobs layouts), oci-archive, OCI layout directory.

use std::fs;
use std::path::Path;

use oci_spec::image::{Arch, Os};
use serde_json::json;

use super::*;
use crate::{Error, LoadedImage, Store};

fn layer1() -> Vec<u8> {
    let mut tb = Tb::new();
    tb.dir("bin").file_mode("bin/sh", b"#!shell", 0o755).dir("etc").file("etc/old", b"old");
    tb.finish()
}

fn layer2() -> Vec<u8> {
    let mut tb = Tb::new();
    tb.dir("etc").file("etc/.wh.old", b"").file("etc/new", b"new");
    tb.finish()
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": Arch::default().to_string(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}}, "Labels": null},
        "container_config": {"Hostname": "abc"},
        "docker_version": "24.0.0",
        "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "one"}, {"created_by": "two"}]
    }))
    .unwrap()
}

fn hexof(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

fn write_archive(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut tb = Tb::new();
    for (name, data) in members {
        tb.file(name, data);
    }
    fs::write(path, tb.finish()).unwrap();
}

fn check_image(s: &Store, img: &LoadedImage, l1: &[u8], l2: &[u8]) {
    assert_eq!(img.diff_ids, vec![sha256(l1), sha256(l2)]);
    let cfg_bytes = fs::read(s.blob_path(&img.id).unwrap()).unwrap();
    assert_eq!(sha256(&cfg_bytes), img.id);
    assert_eq!(s.read_config(&img.id).unwrap(), img.config);
    let lower = s.layer_dir(&img.diff_ids[0]).unwrap();
    let upper = s.layer_dir(&img.diff_ids[1]).unwrap();
    assert_eq!(fs::read(lower.join("bin/sh")).unwrap(), b"#!shell");
    assert!(is_whiteout(&upper.join("etc/old")));
    assert_eq!(img.size, 7 + 3 + 3);
    assert!(img.blobs.contains(&img.id));
}

#[test]
fn docker_archive_legacy_layout() {
    let (d, s) = store();
    let (l1, l2) = (layer1(), layer2());
    let diff_ids = vec![sha256(&l1), sha256(&l2), sha256(&l1)];
    let cfg = config(&diff_ids);
    let cfg_name = format!("{}.json", hexof(&sha256(&cfg)));
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    let mut tb = Tb::new();
    tb.dir(&id1).file(&format!("{id1}/VERSION"), b"1.0").file(&format!("{id1}/json"), b"{}");
    tb.file(&format!("{id1}/layer.tar"), &l1);
    tb.dir(&id2).file(&format!("{id2}/layer.tar"), &l2);
    // A repeated layer is stored once, as a symlink (as `docker save` does).
    tb.dir(&id3).symlink(&format!("{id3}/layer.tar"), &format!("../{id1}/layer.tar"));
    tb.file(&cfg_name, &cfg);
    let manifest = json!([{
        "Config": cfg_name,
        "RepoTags": ["busybox:latest", "busybox:1"],
        "Layers": [format!("{id1}/layer.tar"), format!("{id2}/layer.tar"), format!("{id3}/layer.tar")]
    }]);
    tb.file("manifest.json", manifest.to_string().as_bytes());
    tb.file("repositories", json!({"busybox": {"latest": id3}}).to_string().as_bytes());
    let path = d.path().join("save.tar");
    fs::write(&path, tb.finish()).unwrap();

    let images = s.load(&path, &overlay_opts()).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.repo_tags, vec!["busybox:latest", "busybox:1"]);
    assert_eq!(img.manifest_digest, None);
    assert_eq!(img.diff_ids, diff_ids);
    assert_eq!(img.id, sha256(&cfg));
    assert_eq!(img.config.config().as_ref().unwrap().exposed_ports().as_deref(), Some(&["80/tcp".to_owned()][..]));
    assert_clean(&s, 2, 1);

    // Loading again is cheap and gives the same answer.
    assert_eq!(s.load(&path, &overlay_opts()).unwrap()[0].id, img.id);
}

#[test]
fn docker_archive_blobs_layout_gzipped() {
    let (d, s) = store();
    let (l1, l2) = (layer1(), layer2());
    let cfg = config(&[sha256(&l1), sha256(&l2)]);
    let blob = |data: &[u8]| (format!("blobs/sha256/{}", hexof(&sha256(data))), data.to_vec());
    let manifest = json!([{
        "Config": blob(&cfg).0,
        "RepoTags": ["app:v2"],
        "Layers": [blob(&l1).0, blob(&l2).0]
    }]);
    // Docker 25+ writes both views; the docker one wins.
    let members = vec![
        blob(&l1),
        blob(&l2),
        blob(&cfg),
        ("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".to_owned(), br#"{"schemaVersion":2,"manifests":[]}"#.to_vec()),
        ("manifest.json".to_owned(), manifest.to_string().into_bytes()),
    ];
    let plain = d.path().join("plain.tar");
    write_archive(&plain, &members);
    let gz = d.path().join("save.tar.gz");
    fs::write(&gz, gzip(&fs::read(&plain).unwrap())).unwrap();

    let images = s.load(&gz, &overlay_opts()).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, vec!["app:v2"]);
    check_image(&s, &images[0], &l1, &l2);
    assert_clean(&s, 2, 1);
}

/// Writes an OCI layout (gzip layers) into `out` (a directory) and returns the
/// manifest digest. `index` builds index.json from the manifest descriptor.
fn oci_layout(out: &Path, l1: &[u8], l2: &[u8], index: impl FnOnce(serde_json::Value) -> serde_json::Value) -> String {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        fs::write(blobs.join(hexof(&d)), data).unwrap();
        json!({"digest": d, "size": data.len()})
    };
    let (g1, g2) = (gzip(l1), gzip(l2));
    let cfg = config(&[sha256(l1), sha256(l2)]);
    let mut layers = vec![put(&g1), put(&g2)];
    for l in &mut layers {
        l["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
    }
    let mut config_desc = put(&cfg);
    config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers
    }))
    .unwrap();
    let mut mdesc = put(&manifest);
    mdesc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(out.join("index.json"), serde_json::to_vec(&index(mdesc.clone())).unwrap()).unwrap();
    mdesc["digest"].as_str().unwrap().to_owned()
}

/// Tars up a directory tree (files only, by relative path).
fn tar_dir(dir: &Path, out: &Path) {
    let mut members = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                members.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    write_archive(out, &members);
}

#[test]
fn oci_archive_tar() {
    let (d, s) = store();
    let (l1, l2) = (layer1(), layer2());
    let layout = d.path().join("layout");
    let mdigest = oci_layout(&layout, &l1, &l2, |m| {
        let mut a = m.clone();
        a["annotations"] = json!({"org.opencontainers.image.ref.name": "example.com/app:1"});
        let mut b = m.clone();
        b["annotations"] = json!({
            "io.containerd.image.name": "docker.io/library/app:latest",
            "org.opencontainers.image.ref.name": "latest"
        });
        let mut c = m;
        c["annotations"] = json!({"org.opencontainers.image.ref.name": "bare"});
        json!({"schemaVersion": 2, "manifests": [a, b, c]})
    });
    let archive = d.path().join("oci.tar");
    tar_dir(&layout, &archive);

    let images = s.load(&archive, &overlay_opts()).unwrap();
    assert_eq!(images.len(), 1, "one manifest, several names");
    let img = &images[0];
    assert_eq!(img.repo_tags, vec!["example.com/app:1", "docker.io/library/app:latest"]);
    assert_eq!(img.manifest_digest.as_deref(), Some(mdigest.as_str()));
    check_image(&s, img, &l1, &l2);
    assert!(s.has_blob(&mdigest));
    assert_eq!(img.blobs.len(), 2);
    assert_clean(&s, 2, 2);
}

#[test]
fn oci_layout_directory_multi_platform() {
    let (d, s) = store();
    let (l1, l2) = (layer1(), layer2());
    let layout = d.path().join("layout");
    let host = (Os::default().to_string(), Arch::default().to_string());
    let other = if host.1 == "s390x" { "riscv64" } else { "s390x" };
    let mut index_digest = String::new();
    oci_layout(&layout, &l1, &l2, |mut m| {
        m["platform"] = json!({"os": host.0, "architecture": host.1});
        let foreign = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(b"not in the layout"), "size": 17,
            "platform": {"os": "linux", "architecture": other}
        });
        let attestation = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(b"attestation"), "size": 11,
            "platform": {"os": "unknown", "architecture": "unknown"}
        });
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [foreign, m, attestation]
        }))
        .unwrap();
        index_digest = sha256(&nested);
        fs::write(layout.join("blobs/sha256").join(hexof(&index_digest)), &nested).unwrap();
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": nested.len(),
            "annotations": {"io.containerd.image.name": "example.com/multi:1"}
        }]})
    });
    let images = s.load(&layout, &overlay_opts()).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, vec!["example.com/multi:1"]);
    check_image(&s, &images[0], &l1, &l2);
}

#[test]
fn oci_layer_digest_mismatch_leaves_nothing() {
    let (d, s) = store();
    let (l1, l2) = (layer1(), layer2());
    let layout = d.path().join("layout");
    oci_layout(&layout, &l1, &l2, |m| json!({"manifests": [m]}));
    // Change the second layer blob's gzip header mtime: same size, same content, but
    // its digest no longer matches the manifest.
    let g2 = layout.join("blobs/sha256").join(hexof(&sha256(&gzip(&l2))));
    let mut bytes = fs::read(&g2).unwrap();
    bytes[4] ^= 0x55;
    fs::write(&g2, bytes).unwrap();
    let err = s.load(&layout, &overlay_opts()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // The first layer verified and stays (shared content); nothing of layer 2, no config.
    assert_clean(&s, 1, 0);
    assert!(!s.has_layer(&sha256(&l2)));
}

#[test]
fn docker_archive_diff_id_mismatch_leaves_nothing() {
    let (d, s) = store();
    let l1 = layer1();
    let cfg = config(&[sha256(b"not the layer")]);
    let path = d.path().join("bad.tar");
    let manifest = json!([{"Config": "config.json", "RepoTags": ["x:y"], "Layers": ["l/layer.tar"]}]);
    write_archive(
        &path,
        &[
            ("config.json".into(), cfg),
            ("l/layer.tar".into(), l1),
            ("manifest.json".into(), manifest.to_string().into_bytes()),
        ],
    );
    let err = s.load(&path, &overlay_opts()).unwrap_err().to_string();
    assert!(err.contains("uncompressed content (diff_id): digest mismatch"), "{err}");
    assert_clean(&s, 0, 0);
}

#[test]
fn malformed_archives() {
    let (d, s) = store();
    let path = d.path().join("a.tar");

    // manifest.json over the metadata limit.
    let huge = vec![b' '; (crate::METADATA_LIMIT + 1) as usize];
    write_archive(&path, &[("manifest.json".into(), huge)]);
    let err = s.load(&path, &overlay_opts()).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");

    // Not an image archive.
    write_archive(&path, &[("hello.txt".into(), b"hi".to_vec())]);
    let err = s.load(&path, &overlay_opts()).unwrap_err().to_string();
    assert!(err.contains("not an image archive"), "{err}");

    // A manifest pointing outside the archive.
    let cfg = config(&[sha256(b"x")]);
    let manifest = json!([{"Config": "c.json", "Layers": ["../../../etc/passwd"]}]);
    write_archive(
        &path,
        &[("c.json".into(), cfg.clone()), ("manifest.json".into(), manifest.to_string().into_bytes())],
    );
    let err = s.load(&path, &overlay_opts()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    // A config whose name is a digest it does not have.
    let wrong = format!("{}.json", "0".repeat(64));
    let manifest = json!([{"Config": wrong, "Layers": []}]);
    write_archive(&path, &[(wrong.clone(), cfg), ("manifest.json".into(), manifest.to_string().into_bytes())]);
    let err = s.load(&path, &overlay_opts()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    // Garbage JSON.
    write_archive(&path, &[("manifest.json".into(), b"{not json".to_vec())]);
    assert!(matches!(s.load(&path, &overlay_opts()), Err(Error::Json { .. })));

    // A truncated archive.
    let mut members = vec![("manifest.json".to_owned(), b"[]".to_vec())];
    members.push(("big".into(), vec![1u8; 100_000]));
    write_archive(&path, &members);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..50_000]).unwrap();
    assert!(s.load(&path, &overlay_opts()).is_err());

    assert_clean(&s, 0, 0);
}
