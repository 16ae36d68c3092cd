//! The offline images against what they claim to be. The caracal image is checked against the
//! repository's `Containerfile`, read by the same parser the builder uses: docker is not on
//! the machines these tests run on (and needs a registry for the base images), so the tests do
//! not build the Containerfile itself; they prove the offline image has the configuration the
//! final stage declares and exactly the paths it copies, from this Debian machine, which is
//! what `debian:bookworm-slim` with iptables and ipset holds.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::containerfile::Containerfile;
use super::*;

/// Skips (with the reason on stderr) when this machine lacks a host file the image copies.
macro_rules! require_files {
    ($($p:expr),+) => {
        for p in [$($p),+] {
            if !Path::new(p).exists() {
                eprintln!("skipped: {p} is missing (scripts/install-deps.sh installs it)");
                return;
            }
        }
    };
}

fn fake_binaries(dir: &Path) -> (PathBuf, PathBuf) {
    let mk = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("\x7fELF fake {name}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    (mk("caracal"), mk("caracal-cni"))
}

/// Layer paths as absolute paths without trailing slashes, to their entries.
fn layer_paths(a: &oci::Archive) -> BTreeMap<String, &tar::Entry> {
    a.layer
        .iter()
        .map(|e| (format!("/{}", e.path.trim_end_matches('/')), e))
        .collect()
}

/// An entry's bytes, through a hard link if it is one.
fn data_of<'a>(paths: &BTreeMap<String, &'a tar::Entry>, e: &'a tar::Entry) -> &'a [u8] {
    match e.kind {
        tar::Kind::HardLink => &paths[&format!("/{}", e.link)].data,
        _ => &e.data,
    }
}

fn built_caracal(dir: &Path) -> oci::Archive {
    let (caracal, cni) = fake_binaries(dir);
    let out = dir.join("caracal.tar");
    oci::write(&caracal_image(&caracal, &cni).unwrap(), &out).unwrap();
    oci::read(&out).unwrap()
}

#[test]
fn offline_caracal_image_has_the_config_the_containerfile_declares() {
    require_files!("/usr/sbin/xtables-nft-multi", "/usr/sbin/ipset");
    let d = tempfile::tempdir().unwrap();
    let a = built_caracal(d.path());
    let declared = Containerfile::parse(CONTAINERFILE)
        .unwrap()
        .final_stage()
        .unwrap();
    let c = &a.config["config"];
    assert_eq!(c["Entrypoint"], json!(declared.config.entrypoint));
    assert_eq!(c["Cmd"], json!(declared.config.cmd));
    assert_eq!(c["Env"], json!(declared.config.env));
    assert_eq!(c["WorkingDir"], json!(declared.config.working_dir));
    assert_eq!(c["Labels"], json!(declared.config.labels));
    assert!(c.get("User").is_none() && declared.config.user.is_empty());
    // And what the DaemonSet relies on, stated plainly.
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/caracal"]));
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let path = c["Env"][0].as_str().unwrap();
    assert!(path.starts_with("PATH=") && path.contains("/usr/sbin"), "{path}");
    assert_eq!(
        a.index["manifests"][0]["annotations"][oci::ANNOTATION_CONTAINERD_NAME],
        CARACAL
    );
}

#[test]
fn offline_caracal_layer_holds_exactly_what_the_containerfile_copies() {
    require_files!("/usr/sbin/xtables-nft-multi", "/usr/sbin/ipset");
    let d = tempfile::tempdir().unwrap();
    let a = built_caracal(d.path());
    let layer = layer_paths(&a);
    let file = Containerfile::parse(CONTAINERFILE).unwrap();
    let stage = file.final_stage().unwrap();
    let (caracal, cni) = (d.path().join("caracal"), d.path().join("caracal-cni"));

    // Every path the final stage creates, computed from the Containerfile and the host alone.
    let mut want = BTreeSet::new();
    for p in &stage.placements {
        add_with_parents(&p.dest, &mut want);
        let src = resolve(&file, p, &caracal, &cni).unwrap();
        match src {
            Source::Host(h) if p.dir => {
                for e in walk(&h) {
                    let rel = e.strip_prefix(&h).unwrap().to_string_lossy().into_owned();
                    add_with_parents(&format!("{}/{rel}", p.dest), &mut want);
                }
            }
            Source::Host(h) => {
                let e = layer[&p.dest];
                assert_eq!(data_of(&layer, e), std::fs::read(&h).unwrap(), "{}", p.dest);
                let mode = std::fs::metadata(&h).unwrap().permissions().mode() & 0o7777;
                assert_eq!(e.mode & 0o7777, mode, "{}", p.dest);
            }
            Source::Bytes(text) => assert_eq!(layer[&p.dest].data, text.as_bytes()),
        }
    }
    let have: BTreeSet<String> = layer.keys().cloned().collect();
    assert_eq!(
        have.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the image, not in the Containerfile"
    );
    assert_eq!(
        want.difference(&have).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the Containerfile, not in the image"
    );
    // The names the agent's backend detection and applier call.
    for tool in [
        "iptables-nft-save",
        "iptables-nft-restore",
        "ip6tables-nft-save",
        "ip6tables-nft-restore",
        "iptables-legacy-save",
        "iptables-legacy-restore",
        "ip6tables-legacy-save",
        "ip6tables-legacy-restore",
        "iptables-save",
        "iptables-restore",
        "ipset",
    ] {
        assert!(have.contains(&format!("/usr/sbin/{tool}")), "{tool}");
    }
    for p in [
        "/usr/local/bin/caracal",
        "/usr/local/bin/caracal-cni",
        "/etc/caracal/cni-conflist.json",
    ] {
        assert!(have.contains(p), "{p}");
    }
    assert!(a.layer.iter().all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
}

/// Adds `p` and every folder above it.
fn add_with_parents(p: &str, want: &mut BTreeSet<String>) {
    let mut at = String::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        at = format!("{at}/{c}");
        want.insert(at.clone());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn every_shared_library_the_image_programs_load_is_in_the_containerfile() {
    require_files!("/usr/sbin/xtables-nft-multi", "/usr/sbin/ipset", "/usr/bin/ldd");
    let file = Containerfile::parse(CONTAINERFILE).unwrap();
    let stage = file.final_stage().unwrap();
    let placed: BTreeSet<&str> = stage.placements.iter().map(|p| p.dest.as_str()).collect();
    // This test binary links the Rust standard library as caracal and caracal-cni do.
    let exe = std::env::current_exe().unwrap();
    let mut programs = vec![exe.clone()];
    for p in &stage.placements {
        if let Ok(Source::Host(h)) = resolve(&file, p, &exe, &exe) {
            programs.extend(if p.dir { walk(&h) } else { vec![h] });
        }
    }
    let mut missing = BTreeSet::new();
    for prog in programs {
        let head = std::fs::read(&prog).unwrap_or_default();
        if !head.starts_with(b"\x7fELF") {
            continue;
        }
        for lib in rootfs::shared_libraries(&prog).unwrap() {
            let lib = lib.to_string_lossy().into_owned();
            // Debian's /usr/lib and /lib are one folder (merged /usr).
            let alt = lib.strip_prefix("/usr").map(str::to_owned);
            if !placed.contains(lib.as_str()) && !alt.is_some_and(|a| placed.contains(a.as_str())) {
                missing.insert(format!("{lib} (for {})", prog.display()));
            }
        }
    }
    assert!(missing.is_empty(), "add to the Containerfile: {missing:#?}");
}

#[test]
fn the_daemonset_image_name_resolves_to_the_built_reference() {
    let ds = include_str!("../../../../../deploy/daemonset.yaml");
    let images: BTreeSet<&str> = ds
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(str::trim)
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(normalise(images.first().unwrap()), CARACAL);
    assert!(CARACAL.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(normalise("registry.k8s.io/pause:3.10.1"), PAUSE);
    assert_eq!(normalise("library/busybox"), "docker.io/library/busybox:latest");
    assert_eq!(normalise("localhost/caracal:dev"), "localhost/caracal:dev");
}

#[test]
fn the_init_container_runs_the_installer_without_a_shell() {
    let ds = include_str!("../../../../../deploy/daemonset.yaml");
    assert!(!ds.contains("/bin/sh"), "the caracal image has no shell");
    assert!(ds.contains(r#"command: ["/usr/local/bin/caracal-cni", "install"]"#));
}

#[test]
fn pause_is_static_and_built_the_same_twice() {
    require_files!("/usr/bin/gcc");
    let d = tempfile::tempdir().unwrap();
    let o = BuildOptions {
        out_dir: d.path().to_owned(),
        only: vec![Name::Pause],
        ..Default::default()
    };
    let first = build_all(&o).unwrap();
    let bytes = std::fs::read(d.path().join("pause.tar")).unwrap();
    assert_eq!(build_all(&o).unwrap(), first);
    assert_eq!(std::fs::read(d.path().join("pause.tar")).unwrap(), bytes);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no scratch files left"
    );
    let a = oci::read(&d.path().join("pause.tar")).unwrap();
    assert_eq!(first[0].reference, PAUSE);
    assert_eq!(a.config["config"]["Entrypoint"], json!(["/pause"]));
    assert_eq!(a.config["config"]["User"], "65535:65535");
    let pause = &a.layer.iter().find(|e| e.path == "pause").unwrap();
    assert_eq!(pause.mode, 0o755);
    // Run it outside a container: -v answers, SIGTERM ends it with status 0.
    let bin = d.path().join("pause");
    std::fs::write(&bin, &pause.data).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        rootfs::shared_libraries(&bin).unwrap().is_empty(),
        "pause must be static"
    );
    let v = std::process::Command::new(&bin).arg("-v").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("pause"));
    let mut child = std::process::Command::new(&bin)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn agnhost_image_has_the_e2e_layout() {
    require_files!(
        "/bin/busybox",
        "/usr/bin/curl",
        "/bin/nc.openbsd",
        "/bin/dash",
        "/bin/bash"
    );
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    let porter = d.path().join("src/test/images/agnhost/porter");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&porter).unwrap();
    std::fs::write(bin.join("agnhost"), "agnhost").unwrap();
    std::fs::set_permissions(bin.join("agnhost"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(porter.join("localhost.crt"), "crt").unwrap();
    std::fs::write(porter.join("localhost.key"), "key").unwrap();
    let o = BuildOptions {
        out_dir: d.path().join("out"),
        only: vec![Name::Agnhost, Name::Busybox],
        kube_bin: Some(bin),
        kube_src: Some(d.path().join("src")),
        ..Default::default()
    };
    let built = build_all(&o).unwrap();
    assert_eq!(built[0].reference, AGNHOST);
    assert_eq!(built[1].reference, BUSYBOX);
    let a = oci::read(&d.path().join("out/agnhost.tar")).unwrap();
    let layer = layer_paths(&a);
    assert_eq!(a.config["config"]["Entrypoint"], json!(["/agnhost"]));
    assert_eq!(a.config["config"]["Cmd"], json!(["pause"]));
    let ports = a.config["config"]["ExposedPorts"].as_object().unwrap();
    let ports: Vec<_> = ports.keys().map(String::as_str).collect();
    assert_eq!(ports, ["5000/tcp", "80/tcp", "8080/tcp", "8081/tcp", "9376/tcp"]);
    assert_eq!(layer["/agnhost-2"].link, "agnhost");
    assert_eq!(layer["/localhost.key"].data, b"key");
    assert_eq!(layer["/uploads"].kind, tar::Kind::Dir);
    // /bin/sh is dash and nc is OpenBSD's, not busybox applets.
    assert_eq!(layer["/bin/sh"].data, std::fs::read("/bin/dash").unwrap());
    assert_eq!(
        layer["/usr/bin/nc"].data,
        std::fs::read("/bin/nc.openbsd").unwrap()
    );
    assert!(!layer.contains_key("/bin/nc"));
    assert_eq!(layer["/usr/bin/wget"].link, "/bin/busybox");
    let passwd = String::from_utf8_lossy(&layer["/etc/passwd"].data).into_owned();
    let group = String::from_utf8_lossy(&layer["/etc/group"].data).into_owned();
    assert!(passwd.contains("user-defined-in-image:x:1000:1000:"));
    assert!(group.contains("group-defined-in-image:x:50000:user-defined-in-image"));
    for lib in rootfs::shared_libraries(Path::new("/usr/bin/curl")).unwrap() {
        assert!(layer.contains_key(lib.to_str().unwrap()), "{}", lib.display());
    }
    assert_eq!(layer["/tmp"].mode, 0o1777);
}

/// The lab's CoreDNS Deployment asks for the image the offline builder names after the version
/// tests/kube/dns/go.mod pins, so a version bump cannot leave the pods pulling a missing image.
#[test]
fn the_coredns_manifest_names_the_built_reference() {
    let reference = coredns_reference();
    assert!(
        reference.starts_with("registry.k8s.io/coredns/coredns:v1."),
        "{reference}"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/topologies/k8s/coredns.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let images: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| v["kind"] == "Deployment")
        .flat_map(|v| {
            v["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| c["image"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images, [reference]);
}
