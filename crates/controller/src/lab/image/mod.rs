//! The lab cluster's container images, built offline as OCI archives for
//! `ctr -n k8s.io images import` (no registry, no container engine).
//!
//! - `pause.tar`: [`PAUSE`], a static C program (`tests/images/pause.c`) as the pod sandbox;
//! - `agnhost.tar`: [`AGNHOST`], the e2e suite's test server built from source by
//!   `tests/kube/build.sh`, with busybox applets, curl, OpenBSD nc, dash as `/bin/sh` and bash;
//! - `busybox.tar`: [`BUSYBOX`], busybox and its applets;
//! - `caracal.tar`: [`CARACAL`], the node image: exactly what the repository's `Containerfile`
//!   puts into its final stage, taken from this machine and the cargo target directory;
//! - `coredns.tar`: [`coredns_reference`], the cluster DNS built from source by
//!   `tests/kube/dns/build.sh`; optional: built only when that build's output is there (the
//!   upstream suites' runs, `scripts/e2e.sh`), since the default test run needs no DNS.
//!
//! The e2e references are those of k8s.io/kubernetes v1.34.4's `test/utils/image/manifest.go`;
//! pods ask for them with `imagePullPolicy: IfNotPresent`, so kubelet never pulls. Every
//! archive is deterministic: the same inputs give the same bytes.

pub mod containerfile;
pub mod oci;
pub mod rootfs;
pub mod tar;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub use oci::{Config, Image, Written};
pub use rootfs::Rootfs;

/// kubeadm's `PauseVersion` and the e2e manifest's `Pause` in v1.34.4 (kubelet itself no longer
/// names a sandbox image: containerd's `sandbox_image` must be this).
pub const PAUSE: &str = "registry.k8s.io/pause:3.10.1";
pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.56";
pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1";
/// `caracal:0.1.0` in deploy/daemonset.yaml, as containerd's CRI normalises it
/// (`docker.io/library/` for a name without a registry).
pub const CARACAL: &str = "docker.io/library/caracal:0.1.0";

/// tests/kube/dns/go.mod, which pins the CoreDNS version the image is named after.
const DNS_GO_MOD: &str = include_str!("../../../../../tests/kube/dns/go.mod");

/// The repository's Containerfile: the caracal image's single description.
pub const CONTAINERFILE: &str = include_str!("../../../../../Containerfile");
const PAUSE_C: &str = include_str!("../../../../../tests/images/pause.c");
/// Files of the build context the Containerfile copies, carried in the binary so the offline
/// build works without a checkout.
const CONTEXT: &[(&str, &str)] = &[("crates/cni/cni-conflist.json", caracal_cni::install::TEMPLATE)];

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One of the images, named as `--only` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Name {
    Pause,
    Agnhost,
    Busybox,
    Caracal,
    Coredns,
}

impl Name {
    pub const ALL: [Name; 5] = [
        Name::Pause,
        Name::Agnhost,
        Name::Busybox,
        Name::Caracal,
        Name::Coredns,
    ];

    pub fn reference(self) -> String {
        match self {
            Name::Pause => PAUSE.into(),
            Name::Agnhost => AGNHOST.into(),
            Name::Busybox => BUSYBOX.into(),
            Name::Caracal => CARACAL.into(),
            Name::Coredns => coredns_reference(),
        }
    }

    /// Built by default (no `--only`) only when its inputs are there.
    fn optional(self) -> bool {
        self == Name::Coredns
    }

    /// `pause.tar`...
    pub fn file_name(self) -> String {
        format!("{self:?}.tar").to_lowercase()
    }
}

/// Where the images' inputs come from; `None` means the default described on each field.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    pub out_dir: PathBuf,
    /// The images to build; empty: all of them.
    pub only: Vec<Name>,
    /// The folder holding `agnhost` (default: `tests/kube/build.sh`'s cache, see
    /// [`crate::testbed::kubetest::bin_dir`]).
    pub kube_bin: Option<PathBuf>,
    /// The k8s.io/kubernetes module source, for agnhost's porter certificate (default: the Go
    /// module cache at the version `tests/kube/go.mod` pins).
    pub kube_src: Option<PathBuf>,
    /// `caracal` and `caracal-cni` (default: as the lab finds them, [`super::caracal_exe`]
    /// and [`super::pod::cni_exe`]: `$CARACAL_BIN`/`$CARACAL_CNI_BIN`, else the running
    /// `caracal` or the cargo target folder above a test binary, and `caracal-cni` beside it).
    pub caracal_bin: Option<PathBuf>,
    pub cni_bin: Option<PathBuf>,
}

/// Builds the selected images into `o.out_dir`, in the order of [`Name::ALL`]; without a
/// selection, every image but the optional ones whose inputs are missing.
pub fn build_all(o: &BuildOptions) -> Result<Vec<Written>> {
    std::fs::create_dir_all(&o.out_dir).with_context(|| format!("creating {}", o.out_dir.display()))?;
    Name::ALL
        .into_iter()
        .filter(|n| {
            if !o.only.is_empty() {
                return o.only.contains(n);
            }
            !n.optional() || coredns_bin().is_some()
        })
        .map(|n| build(n, o))
        .collect()
}

/// `registry.k8s.io/coredns/coredns:<the version tests/kube/dns/go.mod pins>`.
pub fn coredns_reference() -> String {
    let version = DNS_GO_MOD
        .lines()
        .filter_map(|l| l.trim().strip_prefix("require github.com/coredns/coredns "))
        .map(|v| v.trim())
        .next()
        .unwrap_or("unknown");
    format!("registry.k8s.io/coredns/coredns:{version}")
}

/// `coredns` from `$CARACAL_COREDNS_BIN`, else from `tests/kube/dns/build.sh`'s cache folder.
pub fn coredns_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CARACAL_COREDNS_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    crate::testbed::kubetest::build_cache_dir("tests/kube/dns", "coredns")
        .map(|d| d.join("coredns"))
        .filter(|p| p.is_file())
}

/// CoreDNS alone (static), as upstream's image: `/coredns`, run as root for port 53.
pub fn coredns(bin: &Path) -> Result<Image> {
    let mut r = Rootfs::new();
    r.host_file("/coredns", bin)
        .context("coredns (tests/kube/dns/build.sh builds it)")?;
    r.dir("/etc", 0o755);
    r.bytes(
        "/etc/passwd",
        0o644,
        "root:x:0:0:root:/:/coredns\nnobody:x:65534:65534:nobody:/nonexistent:/coredns\n",
    );
    Ok(Image {
        reference: coredns_reference(),
        config: Config {
            entrypoint: vec!["/coredns".into()],
            env: vec![PATH_ENV.into()],
            working_dir: "/".into(),
            exposed_ports: vec!["53/tcp".into(), "53/udp".into()],
            ..Default::default()
        },
        rootfs: r,
    })
}

/// Builds one image into `o.out_dir/<name>.tar`.
pub fn build(name: Name, o: &BuildOptions) -> Result<Written> {
    let image = match name {
        Name::Pause => pause(&o.out_dir)?,
        Name::Busybox => busybox()?,
        Name::Agnhost => {
            let bin = match &o.kube_bin {
                Some(d) => d.clone(),
                None => crate::testbed::kubetest::bin_dir()
                    .context("agnhost: no --kube-bin and no tests/kube/build.sh output in the cache")?,
            };
            let src = match &o.kube_src {
                Some(d) => d.clone(),
                None => kubernetes_source()?,
            };
            agnhost(&bin.join("agnhost"), &src)?
        }
        Name::Caracal => {
            let caracal = o.caracal_bin.clone().map_or_else(super::caracal_exe, Ok)?;
            let cni = o.cni_bin.clone().map_or_else(super::pod::cni_exe, Ok)?;
            caracal_image(&caracal, &cni)?
        }
        Name::Coredns => coredns(&coredns_bin().context(
            "coredns: no $CARACAL_COREDNS_BIN and no tests/kube/dns/build.sh output in the cache",
        )?)?,
    };
    oci::write(&image, &o.out_dir.join(name.file_name()))
}

/// `$GOMODCACHE/k8s.io/kubernetes@<version tests/kube/go.mod pins>`.
pub fn kubernetes_source() -> Result<PathBuf> {
    const GO_MOD: &str = include_str!("../../../../../tests/kube/go.mod");
    let version = GO_MOD
        .lines()
        .filter_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .map(|v| v.split_whitespace().next().unwrap_or(""))
        .next()
        .context("tests/kube/go.mod does not require k8s.io/kubernetes")?;
    let cache = match std::env::var_os("GOMODCACHE").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => {
            let gopath = std::env::var_os("GOPATH")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go")))
                .context("neither GOMODCACHE, GOPATH nor HOME is set")?;
            gopath.join("pkg/mod")
        }
    };
    let dir = cache.join(format!("k8s.io/kubernetes@{version}"));
    if !dir.is_dir() {
        bail!(
            "{} is missing (tests/kube/build.sh downloads it; or pass --kube-src)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The sandbox image: `pause.c` compiled static (in `scratch`, removed after), run as nobody
/// like upstream's.
pub fn pause(scratch: &Path) -> Result<Image> {
    let src = scratch.join(format!(".pause.{}.c", std::process::id()));
    let bin = scratch.join(format!(".pause.{}", std::process::id()));
    let compile = || -> Result<Vec<u8>> {
        std::fs::write(&src, PAUSE_C).with_context(|| format!("writing {}", src.display()))?;
        let out = Command::new("gcc")
            .args(["-Os", "-static", "-s", "-Wall", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .context("running gcc (Debian package build-essential)")?;
        if !out.status.success() {
            bail!("gcc pause.c: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(std::fs::read(&bin)?)
    };
    let result = compile();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&bin);
    let mut rootfs = Rootfs::new();
    rootfs.bytes("/pause", 0o755, result?);
    Ok(Image {
        reference: PAUSE.into(),
        config: Config {
            entrypoint: vec!["/pause".into()],
            env: vec![PATH_ENV.into()],
            working_dir: "/".into(),
            user: "65535:65535".into(),
            ..Default::default()
        },
        rootfs,
    })
}

/// Debian's static busybox with a link per applet, `/tmp`, and root and nobody.
fn busybox_base(users: &[&str], groups: &[&str]) -> Result<Rootfs> {
    let busybox = Path::new("/bin/busybox");
    let mut r = Rootfs::new();
    r.host_program("/bin/busybox", busybox)
        .context("busybox (Debian package busybox-static)")?;
    let out = Command::new(busybox).arg("--list-full").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "bin/busybox" && !applet.is_empty() {
            r.symlink(applet, "/bin/busybox");
        }
    }
    r.dir("/tmp", 0o1777);
    r.dir("/root", 0o700);
    r.dir("/home", 0o755);
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    for u in users {
        passwd.push_str(u);
        passwd.push('\n');
    }
    for g in groups {
        group.push_str(g);
        group.push('\n');
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    group.push_str("nogroup:x:65534:\n");
    r.bytes("/etc/passwd", 0o644, passwd);
    r.bytes("/etc/group", 0o644, group);
    Ok(r)
}

pub fn busybox() -> Result<Image> {
    Ok(Image {
        reference: BUSYBOX.into(),
        config: Config {
            cmd: vec!["sh".into()],
            env: vec![PATH_ENV.into()],
            working_dir: "/".into(),
            ..Default::default()
        },
        rootfs: busybox_base(&[], &[])?,
    })
}

/// agnhost as upstream's `test/images/agnhost/Dockerfile` lays it out (alpine with curl,
/// netcat-openbsd, bash), from Debian's binaries with their shared libraries.
pub fn agnhost(agnhost: &Path, kube_src: &Path) -> Result<Image> {
    // The SupplementalGroups e2e test expects this user, and this group with it as a member.
    let mut r = busybox_base(
        &["user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh"],
        &[
            "user-defined-in-image:x:1000:",
            "group-defined-in-image:x:50000:user-defined-in-image",
        ],
    )?;
    r.dir("/home/user-defined-in-image", 0o755);
    r.host_file("/agnhost", agnhost)
        .context("agnhost (tests/kube/build.sh builds it)")?;
    // entrypoint-tester specs override the entrypoint with /agnhost-2.
    r.symlink("/agnhost-2", "agnhost");
    let porter = kube_src.join("test/images/agnhost/porter");
    r.host_file("/localhost.crt", &porter.join("localhost.crt"))?;
    r.host_file("/localhost.key", &porter.join("localhost.key"))?;
    r.dir("/uploads", 0o755);
    r.host_program("/usr/bin/curl", Path::new("/usr/bin/curl"))
        .context("curl (Debian package curl)")?;
    r.host_file(
        "/etc/ssl/certs/ca-certificates.crt",
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
    )
    .context("CA certificates (Debian package ca-certificates)")?;
    // `nc -u` probes need OpenBSD nc; busybox's applet would shadow it.
    r.remove("/usr/bin/nc");
    r.remove("/bin/nc");
    r.host_program("/usr/bin/nc", Path::new("/bin/nc.openbsd"))
        .context("nc (Debian package netcat-openbsd)")?;
    // busybox ash runs its own applets before PATH (`sh -c 'nc -u ...'` would get busybox nc),
    // so /bin/sh is dash.
    r.host_program("/bin/sh", Path::new("/bin/dash"))
        .context("dash (Debian package dash)")?;
    r.host_program("/bin/bash", Path::new("/bin/bash"))?;
    Ok(Image {
        reference: AGNHOST.into(),
        config: Config {
            entrypoint: vec!["/agnhost".into()],
            cmd: vec!["pause".into()],
            env: vec![PATH_ENV.into()],
            working_dir: "/".into(),
            exposed_ports: ["80", "8080", "8081", "9376", "5000"]
                .map(|p| format!("{p}/tcp"))
                .to_vec(),
            ..Default::default()
        },
        rootfs: r,
    })
}

/// The full reference containerd's CRI looks an image name up by (docker's normalisation):
/// `caracal:0.1.0` → `docker.io/library/caracal:0.1.0`.
pub fn normalise(name: &str) -> String {
    let first = name.split('/').next().unwrap_or(name);
    let has_registry = name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let mut full = match (has_registry, name.contains('/')) {
        (true, _) => name.to_owned(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains([':', '@']) {
        full.push_str(":latest");
    }
    full
}

/// Where a Containerfile COPY source is on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    Bytes(&'static str),
}

/// Maps the Containerfile's stages to this machine: the Rust build stage to the given binaries,
/// the Debian stage to this (Debian) machine's own files, the context to [`CONTEXT`].
pub fn resolve(
    file: &containerfile::Containerfile,
    p: &containerfile::Placement,
    caracal: &Path,
    cni: &Path,
) -> Result<Source> {
    let Some(from) = &p.from else {
        return CONTEXT
            .iter()
            .find(|(path, _)| *path == p.source.trim_start_matches("./"))
            .map(|(_, text)| Source::Bytes(text))
            .with_context(|| {
                format!(
                    "build context file {} is not carried by the offline builder",
                    p.source
                )
            });
    };
    let stage = file
        .stage(from)
        .with_context(|| format!("COPY --from={from}: no stage named {from}"))?;
    if stage.base.starts_with("rust:") {
        return match p.source.rsplit('/').next() {
            Some("caracal") => Ok(Source::Host(caracal.to_owned())),
            Some("caracal-cni") => Ok(Source::Host(cni.to_owned())),
            _ => bail!(
                "COPY --from={from} {}: only caracal and caracal-cni are built",
                p.source
            ),
        };
    }
    if stage.base.starts_with("debian:") {
        return Ok(Source::Host(PathBuf::from(&p.source)));
    }
    bail!(
        "COPY --from={from}: stage base {} has no offline stand-in",
        stage.base
    )
}

/// The caracal image from the Containerfile's final stage.
pub fn caracal_image(caracal: &Path, cni: &Path) -> Result<Image> {
    image_from_containerfile(CONTAINERFILE, CARACAL, caracal, cni)
}

pub fn image_from_containerfile(text: &str, reference: &str, caracal: &Path, cni: &Path) -> Result<Image> {
    let file = containerfile::Containerfile::parse(text)?;
    let stage = file.final_stage()?;
    if stage.base != "scratch" {
        bail!(
            "the Containerfile's final stage must start FROM scratch, not {}",
            stage.base
        );
    }
    let mut r = Rootfs::new();
    for p in &stage.placements {
        match resolve(&file, p, caracal, cni)? {
            Source::Bytes(text) => r.bytes(&p.dest, 0o644, text),
            Source::Host(h) if p.dir => r.host_tree(&p.dest, &h)?,
            Source::Host(h) => r.host_file(&p.dest, &h)?,
        }
    }
    Ok(Image {
        reference: reference.into(),
        config: stage.config,
        rootfs: r,
    })
}

#[cfg(test)]
mod tests;
