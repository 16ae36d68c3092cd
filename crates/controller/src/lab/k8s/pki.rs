//! The lab cluster's credentials: a CA, the API server's serving certificate, its client
//! certificate for kubelets, the service-account key pair, and one static token per component,
//! node and the admin, each with its kubeconfig. Made with the openssl CLI, valid 30 days.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Who gets a token: the user name the API server sees, its groups, and the kubeconfig's name.
pub struct Identity {
    pub file: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn new(file: &str, user: &str, groups: &[&str]) -> Identity {
        Identity {
            file: file.into(),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// The identities of a cluster with `nodes` workers.
pub fn identities(nodes: &[String]) -> Vec<Identity> {
    let mut ids = vec![
        Identity::new("admin", "admin", &["system:masters"]),
        Identity::new("kube-controller-manager", "system:kube-controller-manager", &[]),
        Identity::new("kube-scheduler", "system:kube-scheduler", &[]),
        Identity::new("kube-proxy", "system:kube-proxy", &[]),
    ];
    for n in nodes {
        ids.push(Identity::new(
            &format!("node-{n}"),
            &format!("system:node:{n}"),
            &["system:nodes"],
        ));
    }
    ids
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ec_key(dir: &Path, name: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            name,
        ],
    )
}

/// Signs `<name>.key` with the CA, as `subject`, with the given extensions.
fn sign(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<()> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let extfile = format!("{name}.ext");
    ec_key(dir, &key)?;
    std::fs::write(dir.join(&extfile), ext)?;
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    )
}

/// Writes the CA, certificates and keys into `dir`; `sans` are the API server's addresses.
pub fn make(dir: &Path, sans: &[IpAddr]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    ec_key(dir, "ca.key")?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=caracal-lab-ca",
            "-out",
            "ca.crt",
        ],
    )?;
    let mut alt: Vec<String> = sans.iter().map(|ip| format!("IP:{ip}")).collect();
    alt.push("IP:127.0.0.1".into());
    for d in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        alt.push(format!("DNS:{d}"));
    }
    sign(
        dir,
        "apiserver",
        "/CN=kube-apiserver",
        &format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
            alt.join(",")
        ),
    )?;
    sign(
        dir,
        "apiserver-kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    ec_key(dir, "sa.key")?;
    openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

fn token() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The kubeconfigs the lab writes: one per identity, for a server address.
pub struct Credentials {
    dir: PathBuf,
    tokens: Vec<(String, String)>,
}

impl Credentials {
    /// Writes `tokens.csv` (the API server's `--token-auth-file`) with a fresh token each.
    pub fn issue(dir: &Path, ids: &[Identity]) -> Result<Credentials> {
        let mut csv = String::new();
        let mut tokens = Vec::new();
        for id in ids {
            let t = token()?;
            csv.push_str(&format!("{t},{},{}", id.user, id.file));
            if !id.groups.is_empty() {
                csv.push_str(&format!(",\"{}\"", id.groups.join(",")));
            }
            csv.push('\n');
            tokens.push((id.file.clone(), t));
        }
        std::fs::write(dir.join("tokens.csv"), csv)?;
        Ok(Credentials {
            dir: dir.to_path_buf(),
            tokens,
        })
    }

    /// Writes `<file>.kubeconfig` for `server` (an `https://` URL) and returns its path.
    pub fn kubeconfig(&self, file: &str, server: &str) -> Result<PathBuf> {
        self.kubeconfig_as(file, file, server)
    }

    /// Like [`Credentials::kubeconfig`], written as `<out>.kubeconfig`.
    pub fn kubeconfig_as(&self, file: &str, out: &str, server: &str) -> Result<PathBuf> {
        let token = self
            .tokens
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, t)| t)
            .with_context(|| format!("no token for {file}"))?;
        let ca = self.dir.join("ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: {file}\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: {file}}}\ncurrent-context: lab\n",
            ca.display()
        );
        let path = self.dir.join(format!("{out}.kubeconfig"));
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_in_system_nodes_with_their_node_user() {
        let ids = identities(&["node1".into()]);
        let n = ids.iter().find(|i| i.file == "node-node1").unwrap();
        assert_eq!(n.user, "system:node:node1");
        assert_eq!(n.groups, ["system:nodes"]);
        assert!(
            ids.iter()
                .any(|i| i.user == "admin" && i.groups == ["system:masters"])
        );
    }

    #[test]
    fn token_file_lists_groups_only_when_there_are_some() {
        let dir = tempfile::tempdir().unwrap();
        let ids = identities(&["n1".into()]);
        let creds = Credentials::issue(dir.path(), &ids).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("tokens.csv")).unwrap();
        let sched = csv.lines().find(|l| l.contains("system:kube-scheduler")).unwrap();
        assert_eq!(sched.split(',').count(), 3, "{sched}");
        let node = csv.lines().find(|l| l.contains("system:node:n1")).unwrap();
        assert!(node.ends_with(",node-n1,\"system:nodes\""), "{node}");
        let kc = creds.kubeconfig("node-n1", "https://10.0.0.2:6443").unwrap();
        let text = std::fs::read_to_string(kc).unwrap();
        let tok = node.split(',').next().unwrap();
        assert!(text.contains(&format!("token: {tok}")));
        assert!(text.contains("server: https://10.0.0.2:6443"));
    }
}
