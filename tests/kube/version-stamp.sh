# Sourced by the Go build scripts (tests/kube/build.sh, tests/kube/e2e/build.sh) from inside their
# module: sets $kver, the pinned k8s.io/kubernetes version, and $x, the -ldflags -X flags that stamp
# it. Module zips carry a placeholder version; upstream's hack/lib/version.sh stamps the real one,
# so that /version, kubectl's skew check and the e2e suite see v1.34.x.
kver=$("$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$kver" | cut -d. -f2)
x=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x="$x -X $p.gitVersion=$kver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
