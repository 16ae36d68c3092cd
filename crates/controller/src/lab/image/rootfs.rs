//! An image's file tree, described before anything is written: paths to directories, files
//! (bytes, or a file of this machine copied at write time) and symlinks. Written as one
//! deterministic tar layer, in path order, with uid/gid 0 and mtime 0.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::tar;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A regular file on this machine (symlinks already resolved).
    Host(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { content: Content, mode: u32 },
    Symlink { target: String },
}

/// Paths are kept relative (`usr/bin/curl`), so sorting puts every directory before its
/// contents.
#[derive(Clone, Debug, Default)]
pub struct Rootfs {
    nodes: BTreeMap<String, Node>,
}

/// `/usr/bin/` → `usr/bin`.
pub fn rel(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Rootfs {
    pub fn new() -> Rootfs {
        Rootfs::default()
    }

    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&rel(path))
    }

    /// A directory and its missing parents.
    pub fn dir(&mut self, path: &str, mode: u32) {
        let p = rel(path);
        if p.is_empty() {
            return;
        }
        self.parents(&p);
        self.nodes.insert(p, Node::Dir { mode });
    }

    fn parents(&mut self, p: &str) {
        let mut at = 0;
        while let Some(i) = p[at..].find('/') {
            let parent = &p[..at + i];
            self.nodes
                .entry(parent.to_owned())
                .or_insert(Node::Dir { mode: 0o755 });
            at += i + 1;
        }
    }

    fn insert(&mut self, path: &str, node: Node) {
        let p = rel(path);
        self.parents(&p);
        self.nodes.insert(p, node);
    }

    pub fn bytes(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.insert(
            path,
            Node::File {
                content: Content::Bytes(data.into()),
                mode,
            },
        );
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        );
    }

    /// Removes `path` (and anything below it).
    pub fn remove(&mut self, path: &str) {
        let p = rel(path);
        let below = format!("{p}/");
        self.nodes.retain(|k, _| *k != p && !k.starts_with(&below));
    }

    /// Copies the file at `host` (following symlinks, as COPY does) to `path`, keeping its mode.
    pub fn host_file(&mut self, path: &str, host: &Path) -> Result<()> {
        let real = std::fs::canonicalize(host).with_context(|| format!("image file {}", host.display()))?;
        let meta = std::fs::metadata(&real).with_context(|| format!("image file {}", real.display()))?;
        if !meta.is_file() {
            bail!("image file {} is not a regular file", host.display());
        }
        self.insert(
            path,
            Node::File {
                content: Content::Host(real),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Copies the directory `host` with everything below it to `path`, symlinks as symlinks.
    pub fn host_tree(&mut self, path: &str, host: &Path) -> Result<()> {
        let meta = std::fs::metadata(host).with_context(|| format!("image folder {}", host.display()))?;
        if !meta.is_dir() {
            bail!("image folder {} is not a directory", host.display());
        }
        self.dir(path, meta.permissions().mode() & 0o7777);
        let mut names: Vec<_> = std::fs::read_dir(host)
            .with_context(|| format!("reading {}", host.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            let from = host.join(&name);
            let to = format!("{}/{}", rel(path), name.to_string_lossy());
            let lmeta = std::fs::symlink_metadata(&from)?;
            if lmeta.file_type().is_symlink() {
                let target = std::fs::read_link(&from)?;
                self.symlink(&to, &target.to_string_lossy());
            } else if lmeta.is_dir() {
                self.host_tree(&to, &from)?;
            } else if lmeta.is_file() {
                self.host_file(&to, &from)?;
            } else {
                bail!(
                    "{}: only files, folders and symlinks go into images",
                    from.display()
                );
            }
        }
        Ok(())
    }

    /// Copies a dynamically linked program to `path` together with the shared libraries and the
    /// loader it needs, each at the path `ldd` names (a static program brings nothing else).
    pub fn host_program(&mut self, path: &str, host: &Path) -> Result<()> {
        self.host_file(path, host)?;
        for lib in shared_libraries(host)? {
            self.host_file(&lib.to_string_lossy(), &lib)?;
        }
        Ok(())
    }

    /// Every path in the tree, absolute (`/usr/bin/curl`).
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.keys().map(|k| format!("/{k}"))
    }

    /// Writes the tree as a tar layer. Two paths with the same host file and mode become one
    /// file and a hard link, so the iptables names cost one copy of each binary.
    pub fn write_layer<W: Write>(&self, out: W) -> Result<W> {
        let mut w = tar::Writer::new(out);
        let mut seen: HashMap<(&Path, u32), &str> = HashMap::new();
        for (path, node) in &self.nodes {
            match node {
                Node::Dir { mode } => w.dir(path, *mode)?,
                Node::Symlink { target } => w.symlink(path, target)?,
                Node::File {
                    content: Content::Bytes(b),
                    mode,
                } => w.file_bytes(path, *mode, b)?,
                Node::File {
                    content: Content::Host(h),
                    mode,
                } => {
                    if let Some(first) = seen.get(&(h.as_path(), *mode)) {
                        w.hard_link(path, *mode, first)?;
                        continue;
                    }
                    let f = std::fs::File::open(h).with_context(|| format!("opening {}", h.display()))?;
                    let size = f.metadata()?.len();
                    w.file(path, *mode, size, std::io::BufReader::new(f))
                        .with_context(|| format!("writing {} from {}", path, h.display()))?;
                    seen.insert((h.as_path(), *mode), path);
                }
            }
        }
        Ok(w.finish()?)
    }
}

/// The shared libraries and the loader a program needs, as `ldd` resolves them on this machine.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Static programs: "not a dynamic executable" (glibc's ldd exits 1).
        let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        if all.contains("not a dynamic executable") || all.contains("statically linked") {
            return Ok(Vec::new());
        }
        bail!("ldd {}: {}", program.display(), all.trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", program.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let p = rest.split_whitespace().next().unwrap_or("");
                if p == "not" {
                    bail!("{} not found", name.trim());
                }
                p
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        // linux-vdso.so.1 is the kernel's, with no path.
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_are_created() {
        let mut r = Rootfs::new();
        r.bytes("/usr/bin/x", 0o755, "x");
        r.symlink("/bin/sh", "dash");
        let paths: Vec<_> = r.paths().collect();
        assert_eq!(paths, ["/bin", "/bin/sh", "/usr", "/usr/bin", "/usr/bin/x"]);
        assert_eq!(r.get("/usr/"), Some(&Node::Dir { mode: 0o755 }));
    }

    #[test]
    fn ldd_output_names_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f5c)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f5c)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libmnl.so.0"),
                "/lib/x86_64-linux-gnu/libc.so.6".into(),
                "/lib64/ld-linux-x86-64.so.2".into()
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn the_same_host_file_twice_is_one_copy_and_a_hard_link() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("multi");
        std::fs::write(&f, b"binary").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut r = Rootfs::new();
        r.host_file("/usr/sbin/a", &f).unwrap();
        r.host_file("/usr/sbin/b", &f).unwrap();
        let layer = r.write_layer(Vec::new()).unwrap();
        let e = tar::entries(&layer).unwrap();
        assert_eq!(e[2].path, "usr/sbin/a");
        assert_eq!((e[2].mode, e[2].data.as_slice()), (0o755, &b"binary"[..]));
        assert_eq!(
            (e[3].kind, e[3].mode, e[3].link.as_str()),
            (tar::Kind::HardLink, 0o755, "usr/sbin/a")
        );
    }
}
