//! Test support: a real etcd and kube-apiserver on 127.0.0.1, for the integration tests.
//!
//! [`KubeApi::start`] generates a CA and serving certificate (openssl CLI), a static token file
//! and a kubeconfig, starts etcd and kube-apiserver (token authentication, RBAC authorization)
//! on free loopback ports in a unique temporary directory, and waits for `/readyz`. Dropping it
//! kills both processes and removes the directory, also when the test panics.
//!
//! The binaries come from `tests/kube/build.sh` (cached under `~/.cache/caracal/kube-<hash>/`,
//! or `$CARACAL_KUBE_BIN`). When they are missing, [`KubeApi::start`] prints
//! `skipped: kube-apiserver not built (run tests/kube/build.sh)` and returns `None`, unless
//! `CARACAL_REQUIRE_KUBE=1`, which turns the skip into a failure (for CI).

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

/// kubeconfig context (and token-file user) with `system:masters`: bypasses RBAC.
pub const ADMIN: &str = "admin";
/// kubeconfig context authenticating as the agent's ServiceAccount
/// (`system:serviceaccount:kube-system:caracal-node`), so `deploy/rbac.yaml` decides.
pub const NODE_AGENT: &str = "caracal-node";
/// kubeconfig context of an authenticated user with no permissions at all.
pub const NOBODY: &str = "nobody";

const SETPRIV: &str = "/usr/bin/setpriv";

const NODE_AGENT_USER: &str = "system:serviceaccount:kube-system:caracal-node";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Start(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Where `tests/kube/build.sh` puts the binaries for the checked-in go.sum.
pub fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("kube-apiserver").is_file() && d.join("etcd").is_file();
    // scripts/test.sh exports KUBE_BIN_DIR from build.sh's output.
    if let Some(dir) = std::env::var_os("CARACAL_KUBE_BIN").or_else(|| std::env::var_os("KUBE_BIN_DIR")) {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    let dir = build_cache_dir("tests/kube", "kube")?;
    has_both(&dir).then_some(dir)
}

/// Where a `tests/kube*/build.sh` puts its output: `$CARACAL_CACHE` (default
/// `~/.cache/caracal`) `/<prefix>-<first 16 hex digits of sha256(<module>/go.sum)>`, as the
/// scripts compute it. `module` is relative to the repository root.
pub fn build_cache_dir(module: &str, prefix: &str) -> Option<PathBuf> {
    let go_sum = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../{module}/go.sum"));
    let digest = Sha256::digest(fs::read(go_sum).ok()?);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let cache = std::env::var_os("CARACAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/caracal")))?;
    Some(cache.join(format!("{prefix}-{hash}")))
}

/// The kubectl to run: `$CARACAL_KUBECTL`, else `kubectl` on PATH.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("CARACAL_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("read a bound port"))?.port())
}

fn random_hex() -> Result<String> {
    let mut buf = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io("read /dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Removes the directories of test processes that were killed before their Drop could run
/// (their processes died with them through the parent-death signal).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("caracal-kube-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn unique_dir() -> Result<PathBuf> {
    remove_stale_dirs();
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "caracal-kube-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        &random_hex()?[..8]
    ));
    fs::create_dir_all(dir.join("pki")).map_err(io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// One etcd + kube-apiserver pair, owned by one test.
pub struct KubeApi {
    dir: PathBuf,
    bin: PathBuf,
    pub api_port: u16,
    pub etcd_port: u16,
    etcd_peer_port: u16,
    admin_token: String,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

impl KubeApi {
    /// Starts a fresh control plane, or returns `None` (after printing why) when the
    /// binaries are not built.
    pub async fn start() -> Result<Option<Self>> {
        let Some(bin) = bin_dir() else {
            if std::env::var("CARACAL_REQUIRE_KUBE").is_ok_and(|v| v == "1") {
                return Err(Error::Start(
                    "kube-apiserver not built and CARACAL_REQUIRE_KUBE=1 (run tests/kube/build.sh)".into(),
                ));
            }
            eprintln!("skipped: kube-apiserver not built (run tests/kube/build.sh)");
            return Ok(None);
        };
        // A free port can be taken by someone else before our process binds it: retry with
        // new ports rather than fail a test on that race.
        let mut last = None;
        let started = Instant::now();
        for _ in 0..3 {
            match Self::start_in(&bin).await {
                Ok(api) => {
                    eprintln!(
                        "etcd and kube-apiserver ready in {:.1?} ({})",
                        started.elapsed(),
                        api.dir.display()
                    );
                    return Ok(Some(api));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    async fn start_in(bin: &Path) -> Result<Self> {
        let dir = unique_dir()?;
        let mut api = KubeApi {
            dir,
            bin: bin.to_path_buf(),
            api_port: free_port()?,
            etcd_port: free_port()?,
            etcd_peer_port: free_port()?,
            admin_token: random_hex()?,
            etcd: None,
            apiserver: None,
        };
        // The lab cluster's credentials serve here too: a CA, the serving certificate (for
        // 127.0.0.1 among others) and the service-account key pair.
        crate::lab::k8s::pki::make(&api.dir.join("pki"), &[]).map_err(|e| Error::Start(format!("{e:#}")))?;
        api.write_credentials()?;
        api.start_etcd().await?;
        api.start_apiserver().await?;
        Ok(api)
    }

    fn write_credentials(&self) -> Result<()> {
        let node_token = random_hex()?;
        let nobody_token = random_hex()?;
        fs::write(
            self.dir.join("tokens.csv"),
            format!(
                "{admin},{ADMIN},uid-admin,\"system:masters\"\n\
                 {node_token},{NODE_AGENT_USER},uid-caracal-node,\
                 \"system:serviceaccounts,system:serviceaccounts:kube-system\"\n\
                 {nobody_token},{NOBODY},uid-nobody,\n",
                admin = self.admin_token
            ),
        )
        .map_err(io("write tokens.csv"))?;
        let user = |name: &str, token: &str| format!("- name: {name}\n  user:\n    token: {token}\n");
        let context =
            |name: &str| format!("- name: {name}\n  context:\n    cluster: caracal-test\n    user: {name}\n");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: caracal-test\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\n\
             users:\n{u1}{u2}{u3}contexts:\n{c1}{c2}{c3}current-context: {ADMIN}\n",
            port = self.api_port,
            ca = self.dir.join("pki/ca.crt").display(),
            u1 = user(ADMIN, &self.admin_token),
            u2 = user(NODE_AGENT, &node_token),
            u3 = user(NOBODY, &nobody_token),
            c1 = context(ADMIN),
            c2 = context(NODE_AGENT),
            c3 = context(NOBODY),
        );
        fs::write(self.kubeconfig(), kubeconfig).map_err(io("write kubeconfig"))
    }

    /// The temporary directory holding certificates, data, logs and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig with the contexts [`ADMIN`] (current), [`NODE_AGENT`] and [`NOBODY`].
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn log_file(&self, name: &str) -> Result<fs::File> {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .map_err(io(format!("open {name}")))
    }

    fn spawn(&self, binary: &str, args: &[String], log: &str) -> Result<Child> {
        let log = self.log_file(log)?;
        // Drop kills the processes on success and on panic; setpriv's parent-death signal also
        // covers a test process that is itself killed (a CI timeout), where no Drop runs. The
        // signal follows the spawning thread, which outlives the KubeApi in every test runtime.
        let mut cmd = if Path::new(SETPRIV).is_file() {
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", "--"]).arg(self.bin.join(binary));
            c
        } else {
            Command::new(self.bin.join(binary))
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("clone log file"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("start {binary}")))
    }

    /// Starts etcd (again, on the same ports and data) and waits until it answers `/health`.
    pub async fn start_etcd(&mut self) -> Result<()> {
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let args: Vec<String> = [
            "--name=caracal-test".to_string(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=caracal-test={peer}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ]
        .into();
        self.etcd = Some(self.spawn("etcd", &args, "etcd.log")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.etcd_healthy() {
                return Ok(());
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Start(format!(
            "etcd not healthy after 30 s:\n{}",
            self.log_tail("etcd.log")
        )))
    }

    /// One request to etcd's JSON gateway; returns the response body.
    fn etcd_post(&self, path: &str, body: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.etcd_port)).map_err(io("connect to etcd"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io("set etcd timeout"))?;
        let req = format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut resp = String::new();
        s.write_all(req.as_bytes())
            .and_then(|()| s.read_to_string(&mut resp))
            .map_err(io(format!("etcd {path}")))?;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(Error::Start(format!("etcd {path}: {head} {body}")));
        }
        Ok(body.to_string())
    }

    /// Compacts etcd's history up to its current revision, so any watch resuming from an
    /// older resourceVersion gets `410 Gone` and must re-list.
    pub fn compact_etcd(&self) -> Result<i64> {
        // A range over one key answers with the store's current revision in its header.
        let body = self.etcd_post("/v3/kv/range", r#"{"key":"AA=="}"#)?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| Error::Start(format!("etcd range: {e}: {body}")))?;
        let revision: i64 = v
            .pointer("/header/revision")
            .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or_else(|| r.as_i64()))
            .ok_or_else(|| Error::Start(format!("etcd range: no revision in {body}")))?;
        self.etcd_post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        Ok(revision)
    }

    fn etcd_healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.etcd_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut resp = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut resp).is_ok()
            && resp.contains("\"health\":\"true\"")
    }

    /// Starts kube-apiserver (again, on the same port) and waits for `/readyz`.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        let pki = self.dir.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let args: Vec<String> = [
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={}", self.api_port),
            // Keep every address the server advertises or writes on loopback.
            "--advertise-address=127.0.0.1".to_string(),
            "--endpoint-reconciler-type=none".to_string(),
            format!("--cert-dir={}", p(""),),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", self.dir.join("tokens.csv").display()),
            "--authorization-mode=RBAC".to_string(),
            format!("--service-account-issuer=https://127.0.0.1:{}", self.api_port),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            // No controller-manager creates the default ServiceAccounts.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ]
        .into();
        self.apiserver = Some(self.spawn("kube-apiserver", &args, "apiserver.log")?);
        self.wait_ready(Duration::from_secs(90)).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = tokio::process::Command::new(kubectl_path())
                .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
                .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                .output()
                .await
                .map_err(io("run kubectl (is it installed?)"))?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Error::Start(format!(
            "kube-apiserver not ready after {timeout:?} (last: {last}):\n{}",
            self.log_tail("apiserver.log")
        )))
    }

    fn check_alive(&mut self) -> Result<()> {
        let mut exited = None;
        for (child, log) in [
            (&mut self.etcd, "etcd.log"),
            (&mut self.apiserver, "apiserver.log"),
        ] {
            if let Some(c) = child
                && let Ok(Some(status)) = c.try_wait()
            {
                *child = None;
                exited = Some((log, status));
                break;
            }
        }
        match exited {
            Some((log, status)) => Err(Error::Start(format!(
                "{log}: process exited with {status}:\n{}",
                self.log_tail(log)
            ))),
            None => Ok(()),
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kill(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills kube-apiserver (SIGKILL, as a crash would).
    pub fn stop_apiserver(&mut self) {
        Self::kill(&mut self.apiserver);
    }

    /// Kills etcd (SIGKILL); its data stays for [`Self::start_etcd`].
    pub fn stop_etcd(&mut self) {
        Self::kill(&mut self.etcd);
    }

    /// A kube-rs client for one of the kubeconfig contexts.
    pub async fn client(&self, context: &str) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("read kubeconfig");
        let options = kube::config::KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("kubeconfig to client config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Runs kubectl as [`ADMIN`] with `stdin` as its input.
    pub async fn kubectl(&self, args: &[&str], stdin: &str) -> std::process::Output {
        self.kubectl_as(ADMIN, args, stdin).await
    }

    /// Runs kubectl with a given context.
    pub async fn kubectl_as(&self, context: &str, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = tokio::process::Command::new(kubectl_path())
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .arg(format!("--context={context}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut input = child.stdin.take().expect("kubectl stdin");
        let data = stdin.as_bytes().to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = input.write_all(&data).await;
        });
        child.wait_with_output().await.expect("kubectl output")
    }

    /// Runs kubectl as [`ADMIN`]; panics with its stderr unless it succeeds; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl(args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- kube-apiserver log (last lines) ---\n{}",
                self.log_tail("apiserver.log")
            );
        }
        Self::kill(&mut self.apiserver);
        Self::kill(&mut self.etcd);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The repository root (for `crds/` and `deploy/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl KubeApi {
    /// Applies every CRD in `crds/` and waits until all are Established.
    pub async fn install_crds(&self) {
        let crds = repo_root().join("crds");
        let crds = crds.to_str().expect("utf-8 path");
        self.kubectl_ok(&["apply", "-f", crds], "").await;
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            "",
        )
        .await;
    }

    /// Applies `deploy/rbac.yaml` (the agent's ServiceAccount, ClusterRole and binding).
    pub async fn install_rbac(&self) {
        let rbac = repo_root().join("deploy/rbac.yaml");
        self.kubectl_ok(&["apply", "-f", rbac.to_str().expect("utf-8 path")], "")
            .await;
    }
}

/// Waits until the datastore's snapshot satisfies `pred`; returns it, or the last snapshot
/// seen if `timeout` passes first.
pub async fn wait_model(
    rx: &mut tokio::sync::watch::Receiver<std::sync::Arc<crate::datastore::Snapshot>>,
    timeout: Duration,
    mut pred: impl FnMut(&crate::datastore::Snapshot) -> bool,
) -> std::result::Result<std::sync::Arc<crate::datastore::Snapshot>, std::sync::Arc<crate::datastore::Snapshot>>
{
    let found = match tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    found.ok_or_else(|| rx.borrow().clone())
}
