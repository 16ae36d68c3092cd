//! The directory datastore: the model built from a directory of manifests (the YAML one would
//! give to `kubectl apply -f <dir>`), rescanned for changes by polling file stamps. Services and
//! EndpointSlices are read as written (nothing computes slices from selectors here).

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::watch;

use super::{
    Datastore, Error, Result, convert,
    model::{Object, Snapshot},
};

/// What identifies a file version without reading it: an edit changes the mtime or size, an
/// atomic replace (editors, `mv`) the inode.
type Stamp = (i64, i64, u64, u64);

fn stamp(meta: &fs::Metadata) -> Stamp {
    (meta.mtime(), meta.mtime_nsec(), meta.size(), meta.ino())
}

struct FileEntry {
    stamp: Stamp,
    objects: Vec<Object>,
}

/// The parsed contents of one manifest directory.
pub struct DirSource {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileEntry>,
}

/// Splits a multi-document YAML (or JSON) text into documents, flattening `List` objects.
pub use caracal_policy::k8s::parse_manifests;

/// Converts one file's documents; problems are returned with the document's position.
fn convert_file(path: &Path, text: &str) -> Result<(Vec<Object>, Vec<String>), String> {
    let docs = parse_manifests(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match convert::object(doc) {
            None => {
                tracing::debug!(file = %path.display(), doc = i, "kind not used by the datastore");
            }
            Some(Ok(object)) => objects.push(object),
            Some(Err(e)) => problems.push(format!("{} (document {i}): {e}", path.display())),
        }
    }
    Ok((objects, problems))
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSource {
            dir: dir.into(),
            files: BTreeMap::new(),
        }
    }

    /// Re-reads new and changed files and forgets removed ones. Returns the problems found
    /// (a file that does not parse keeps its last good contents; a document that does not
    /// convert is skipped); fails only if the directory itself cannot be read.
    pub fn rescan(&mut self) -> Result<Vec<String>> {
        let read_dir = |e| Error::Dir {
            dir: self.dir.clone(),
            source: e,
        };
        let mut seen = BTreeMap::new();
        for entry in fs::read_dir(&self.dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            if !is_manifest(&path) {
                continue;
            }
            // A file removed between listing and stat is simply gone.
            if let Ok(meta) = fs::metadata(&path)
                && meta.is_file()
            {
                seen.insert(path, stamp(&meta));
            }
        }
        self.files.retain(|path, _| seen.contains_key(path));
        let mut problems = Vec::new();
        for (path, stamp) in seen {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            let parsed = fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|text| convert_file(&path, &text));
            match parsed {
                Ok((objects, file_problems)) => {
                    problems.extend(file_problems);
                    self.files.insert(path, FileEntry { stamp, objects });
                }
                Err(e) => {
                    problems.push(e);
                    // Remember the stamp so the same broken version is reported once, but keep
                    // the objects of the last version that parsed.
                    let objects = self.files.remove(&path).map(|f| f.objects).unwrap_or_default();
                    self.files.insert(path, FileEntry { stamp, objects });
                }
            }
        }
        Ok(problems)
    }

    /// The model of everything read so far. Namespaces that objects live in but that no
    /// manifest declares are added with only their name label, as they exist in any cluster.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::from_objects(self.files.values().flat_map(|f| f.objects.clone()));
        caracal_policy::k8s::add_implicit_namespaces(&mut s.cluster);
        s
    }
}

/// Reads a manifest directory once; any problem is an error.
pub fn load_dir(dir: impl Into<PathBuf>) -> Result<Snapshot> {
    let mut source = DirSource::new(dir);
    let problems = source.rescan()?;
    if !problems.is_empty() {
        return Err(Error::Manifests(problems.join("; ")));
    }
    Ok(source.snapshot())
}

/// Watches a manifest directory, polling every `interval`; the returned datastore holds the
/// first scan's model. Problems in files are logged and never empty the model.
pub async fn watch_dir(dir: impl Into<PathBuf>, interval: Duration) -> Result<Datastore> {
    let mut source = DirSource::new(dir);
    let (source, problems) = tokio::task::spawn_blocking(move || {
        let problems = source.rescan();
        (source, problems)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    for p in problems? {
        tracing::warn!("manifest ignored: {p}");
    }
    let (tx, rx) = watch::channel(Arc::new(source.snapshot()));
    let task = tokio::spawn(poll(source, interval, tx));
    Ok(Datastore::new(rx, task))
}

async fn poll(mut source: DirSource, interval: Duration, tx: watch::Sender<Arc<Snapshot>>) {
    loop {
        tokio::time::sleep(interval).await;
        let scanned = tokio::task::spawn_blocking(move || {
            let problems = source.rescan();
            (source, problems)
        })
        .await;
        let Ok((s, problems)) = scanned else { return };
        source = s;
        match problems {
            Ok(problems) => problems
                .iter()
                .for_each(|p| tracing::warn!("manifest ignored: {p}")),
            // The directory vanishing is a problem to report, not a reason to drop the model.
            Err(e) => tracing::warn!("{e}"),
        }
        let snapshot = source.snapshot();
        if **tx.borrow() != snapshot {
            tracing::info!("manifests changed: {}", snapshot.summary());
            if tx.send(Arc::new(snapshot)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
# an empty document and an unrelated kind are skipped
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: prod}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec: {type: LoadBalancer, clusterIP: 10.96.0.20, externalTrafficPolicy: Local}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1a2b, namespace: prod, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.1.0.5], nodeName: node-a}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: prod, labels: {app: web}}
  spec:
    nodeName: node-a
    containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
  status: {podIPs: [{ip: 10.1.0.5}]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: dev}
  spec:
    podSelector: {}
    egress: [{ports: [{port: 53}]}]
"#;

    #[test]
    fn multi_document_yaml_with_lists_becomes_the_model() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("all.yaml"), MANIFESTS).unwrap();
        fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let s = load_dir(dir.path()).unwrap();
        assert_eq!(s.cluster.namespaces["prod"].labels["env"], "prod");
        let pod = &s.cluster.pods[&caracal_policy::model::Key::new("prod", "web-1")];
        assert_eq!(pod.ips, ["10.1.0.5".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(pod.node.as_deref(), Some("node-a"));
        assert_eq!(pod.ports[0].port, 8080);
        // "dev" is only referenced: it exists with its name label, as in a cluster.
        assert_eq!(
            s.cluster.namespaces["dev"].labels[convert::NAMESPACE_NAME_LABEL],
            "dev"
        );
        let svc = &s.services[&caracal_policy::model::Key::new("prod", "web")];
        assert_eq!(svc.type_, crate::datastore::ServiceType::LoadBalancer);
        assert!(svc.external_traffic_local);
        let slice = &s.endpoint_slices[&caracal_policy::model::Key::new("prod", "web-1a2b")];
        assert_eq!(slice.service.as_deref(), Some("web"));
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("node-a"));
        let np = &s.cluster.network_policies[&caracal_policy::model::Key::new("dev", "deny")];
        let spec = np.spec.as_ref().unwrap();
        // The API server's defaults are applied, so both datastores agree.
        assert_eq!(
            spec.policy_types.as_deref().unwrap(),
            ["Ingress".to_string(), "Egress".to_string()]
        );
        let port = &spec.egress.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn broken_file_keeps_its_last_good_objects_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ns.yaml");
        fs::write(&file, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        let mut source = DirSource::new(dir.path());
        assert!(source.rescan().unwrap().is_empty());
        let tmp = dir.path().join("ns.tmp");
        fs::write(&tmp, "apiVersion: v1\nkind: [unclosed\n").unwrap();
        fs::rename(&tmp, &file).unwrap();
        let problems = source.rescan().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ns.yaml"), "{problems:?}");
        assert!(source.snapshot().cluster.namespaces.contains_key("a"));
        // Reported once per broken version, not on every poll.
        assert!(source.rescan().unwrap().is_empty());
    }

    #[test]
    fn bad_document_is_skipped_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("x.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 7}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n",
        )
        .unwrap();
        let mut source = DirSource::new(dir.path());
        let problems = source.rescan().unwrap();
        assert!(problems[0].contains("document 0"), "{problems:?}");
        assert!(source.snapshot().cluster.namespaces.contains_key("ok"));
        assert!(load_dir(dir.path()).is_err());
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = load_dir("/nonexistent/caracal-manifests").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/caracal-manifests"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn watch_dir_publishes_added_changed_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        let ds = watch_dir(dir.path(), Duration::from_millis(20)).await.unwrap();
        let mut rx = ds.subscribe();
        assert!(rx.borrow().cluster.namespaces.is_empty());
        let file = dir.path().join("ns.yaml");
        fs::write(&file, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        let s = tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|s| s.cluster.namespaces.contains_key("a")),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert_eq!(s.cluster.namespaces.len(), 1);
        fs::remove_file(&file).unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|s| s.cluster.namespaces.is_empty()),
        )
        .await
        .unwrap()
        .unwrap();
    }
}
