//! One-layer OCI images written as an image-layout tar archive, the format
//! `ctr images import` and `podman load` read (OCI image-spec v1.1, `image-layout.md`):
//!
//! ```text
//! oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! index.json                      -> manifest, annotated with the image's full reference
//! blobs/sha256/<manifest>         -> config + layer
//! blobs/sha256/<config>           entrypoint, env...; rootfs.diff_ids = sha256 of the raw tar
//! blobs/sha256/<layer>            the file tree, tar+gzip
//! ```
//!
//! Deterministic: fixed timestamps, no host names, JSON with sorted keys, gzip with mtime 0.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::rootfs::Rootfs;
use super::tar;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The name containerd gives an imported image.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The runtime part of an image's configuration (`config` in the OCI config blob).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// `80/tcp`...
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Image {
    /// The full reference, `registry.k8s.io/pause:3.10.1`.
    pub reference: String,
    pub config: Config,
    pub rootfs: Rootfs,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub reference: String,
    /// `sha256:...` of the manifest: containerd's image target.
    pub manifest_digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The CPU architecture as OCI names it.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `registry.k8s.io/pause:3.10.1` → `3.10.1` (`latest` when untagged).
pub fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let last = last.split('@').next().unwrap_or(last);
    last.split_once(':').map_or("latest", |(_, t)| t)
}

/// The config blob. `serde_json` maps sort their keys, so the bytes depend only on the inputs.
pub fn config_json(c: &Config, diff_id: &str) -> Vec<u8> {
    let mut cfg = serde_json::Map::new();
    let strings = |v: &[String]| Value::from(v.to_vec());
    if !c.env.is_empty() {
        cfg.insert("Env".into(), strings(&c.env));
    }
    if !c.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), strings(&c.entrypoint));
    }
    if !c.cmd.is_empty() {
        cfg.insert("Cmd".into(), strings(&c.cmd));
    }
    if !c.working_dir.is_empty() {
        cfg.insert("WorkingDir".into(), c.working_dir.clone().into());
    }
    if !c.user.is_empty() {
        cfg.insert("User".into(), c.user.clone().into());
    }
    if !c.exposed_ports.is_empty() {
        let ports: serde_json::Map<_, _> = c.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect();
        cfg.insert("ExposedPorts".into(), ports.into());
    }
    if !c.labels.is_empty() {
        cfg.insert("Labels".into(), json!(c.labels));
    }
    let v = json!({
        "architecture": architecture(),
        "os": "linux",
        "created": EPOCH,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "caracal lab image build"}],
    });
    serde_json::to_vec(&v).expect("JSON values serialize")
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{:x}", self.hash.clone().finalize())
    }
}

/// Writes `image` to `out` (through a temporary file and a rename, so a reader never sees a
/// half-written archive).
pub fn write(image: &Image, out: &Path) -> Result<Written> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let layer_tmp = dir.join(format!(".{name}.layer.{}", std::process::id()));
    let archive_tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = write_via(image, out, &layer_tmp, &archive_tmp);
    let _ = std::fs::remove_file(&layer_tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&archive_tmp);
    }
    result.with_context(|| format!("writing image {} to {}", image.reference, out.display()))
}

fn write_via(image: &Image, out: &Path, layer_tmp: &Path, archive_tmp: &Path) -> Result<Written> {
    // The layer streams through gzip into a scratch file; both digests are taken on the way.
    let file = File::create(layer_tmp).with_context(|| format!("creating {}", layer_tmp.display()))?;
    let compressed = Hashing::new(BufWriter::new(file));
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(compressed, flate2::Compression::default());
    let raw = image.rootfs.write_layer(Hashing::new(gz))?;
    let diff_id = raw.digest();
    let mut compressed = raw.inner.finish()?;
    compressed.flush()?;
    let (layer_digest, layer_size) = (compressed.digest(), compressed.len);
    compressed
        .inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;

    let config = config_json(&image.config, &diff_id);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
    }))?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": architecture(), "os": "linux"},
            "annotations": {
                ANNOTATION_CONTAINERD_NAME: image.reference,
                ANNOTATION_REF_NAME: tag_of(&image.reference),
            },
        }],
    }))?;

    let file = File::create(archive_tmp).with_context(|| format!("creating {}", archive_tmp.display()))?;
    let mut w = tar::Writer::new(BufWriter::new(file));
    w.dir("blobs", 0o755)?;
    w.dir("blobs/sha256", 0o755)?;
    w.file_bytes("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    w.file_bytes("index.json", 0o644, &index)?;
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut small = [(sha256(&config), &config), (manifest_digest.clone(), &manifest)];
    small.sort();
    for (digest, data) in small {
        w.file_bytes(&blob(&digest), 0o644, data)?;
    }
    let layer = File::open(layer_tmp)?;
    w.file(&blob(&layer_digest), 0o644, layer_size, io::BufReader::new(layer))?;
    w.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(archive_tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(Written {
        path: out.to_owned(),
        reference: image.reference.clone(),
        manifest_digest,
        layer_digest,
        layer_size,
    })
}

/// An archive read back: the parsed JSON documents and the layer's entries (for tests and
/// `caracal lab image` checks).
#[derive(Debug)]
pub struct Archive {
    pub index: Value,
    pub manifest: Value,
    pub config: Value,
    pub layer: Vec<tar::Entry>,
}

/// Reads an archive written by [`write`], checking every digest and size on the way.
pub fn read(path: &Path) -> Result<Archive> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let entries = tar::entries(&bytes)?;
    let file = |name: &str| -> Result<&[u8]> {
        entries
            .iter()
            .find(|e| e.path == name)
            .map(|e| e.data.as_slice())
            .with_context(|| format!("{}: no {name}", path.display()))
    };
    let blob = |desc: &Value| -> Result<&[u8]> {
        let digest = desc["digest"].as_str().context("descriptor without digest")?;
        let data = file(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")))?;
        anyhow::ensure!(sha256(data) == digest, "blob {digest} does not match its digest");
        anyhow::ensure!(
            desc["size"].as_u64() == Some(data.len() as u64),
            "blob {digest}: size {} in its descriptor, {} in the archive",
            desc["size"],
            data.len()
        );
        Ok(data)
    };
    anyhow::ensure!(
        file("oci-layout")? == br#"{"imageLayoutVersion":"1.0.0"}"#,
        "bad oci-layout"
    );
    let index: Value = serde_json::from_slice(file("index.json")?)?;
    let manifest: Value = serde_json::from_slice(blob(&index["manifests"][0])?)?;
    let config: Value = serde_json::from_slice(blob(&manifest["config"])?)?;
    let gz = blob(&manifest["layers"][0])?;
    let mut raw = Vec::new();
    io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut raw)?;
    anyhow::ensure!(
        config["rootfs"]["diff_ids"][0].as_str() == Some(sha256(&raw).as_str()),
        "diff_id does not match the uncompressed layer"
    );
    Ok(Archive {
        index,
        manifest,
        config,
        layer: tar::entries(&raw)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Image {
        let mut rootfs = Rootfs::new();
        rootfs.bytes("/pause", 0o755, vec![0x7f, b'E', b'L', b'F']);
        rootfs.bytes("/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n");
        rootfs.symlink("/bin/sh", "/pause");
        Image {
            reference: "registry.k8s.io/pause:3.10.1".into(),
            config: Config {
                entrypoint: vec!["/pause".into()],
                env: vec!["PATH=/bin".into()],
                user: "65535:65535".into(),
                exposed_ports: vec!["80/tcp".into()],
                ..Default::default()
            },
            rootfs,
        }
    }

    #[test]
    fn digests_and_sizes_agree_across_index_manifest_config_and_layer() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("pause.tar");
        let w = write(&sample(), &out).unwrap();
        // `read` checks every descriptor's digest and size and the diff_id.
        let a = read(&out).unwrap();
        let m = &a.index["manifests"][0];
        assert_eq!(a.index["mediaType"], MEDIA_INDEX);
        assert_eq!(m["digest"], w.manifest_digest.as_str());
        assert_eq!(
            m["annotations"][ANNOTATION_CONTAINERD_NAME],
            "registry.k8s.io/pause:3.10.1"
        );
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "3.10.1");
        assert_eq!(m["platform"]["os"], "linux");
        assert_eq!(a.manifest["layers"][0]["digest"], w.layer_digest.as_str());
        assert_eq!(a.manifest["layers"][0]["mediaType"], MEDIA_LAYER_GZIP);
        assert_eq!(a.config["config"]["Entrypoint"], json!(["/pause"]));
        assert_eq!(a.config["config"]["User"], "65535:65535");
        assert_eq!(a.config["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        let paths: Vec<_> = a.layer.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["bin/", "bin/sh", "etc/", "etc/passwd", "pause"]);
        // No scratch files left beside the archive.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn two_builds_are_byte_identical() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.tar"), d.path().join("b.tar"));
        write(&sample(), &a).unwrap();
        write(&sample(), &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }

    #[test]
    fn a_tampered_blob_is_caught_on_read() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x.tar");
        let w = write(&sample(), &out).unwrap();
        let mut bytes = std::fs::read(&out).unwrap();
        // The layer is the last blob: flip a byte in its gzip trailer.
        let end = bytes.len() - 1024 - (512 - (w.layer_size as usize % 512)) % 512 - 1;
        bytes[end] ^= 0xff;
        std::fs::write(&out, &bytes).unwrap();
        assert!(read(&out).is_err());
    }

    #[test]
    fn tags_come_from_the_last_path_component() {
        assert_eq!(tag_of("registry.k8s.io/e2e-test-images/agnhost:2.56"), "2.56");
        assert_eq!(tag_of("localhost:5000/caracal"), "latest");
        assert_eq!(tag_of("docker.io/library/caracal:0.1.0"), "0.1.0");
    }
}
