#!/usr/bin/env bash
# Builds (or reuses) the end-to-end stack: kubelet, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and etcd (one scratch module, one Kubernetes version), containerd + shim +
# ctr, CNI plugins, crictl, whereabouts (a CNI IPAM plugin that keeps its allocations in the API
# server), and installs Debian's runc, busybox-static, pci.ids (the plugin image's vendor names) and jq
# (the demo's `kubectl ... | jq`). Every Go component is cached by version under
# $E2E_CACHE_DIR/<component>-<version>/bin and marked complete by a .done stamp holding its build
# recipe, so a warm run only compares stamps and a changed recipe rebuilds. All Go binaries are
# static (CGO_ENABLED=0): a fresh machine needs no C toolchain. Prints nothing on stdout but, with
# --print-env, the E2E_* variables test/e2e/run.sh reads.
#
# Env overrides: E2E_CACHE_DIR, KUBE_VERSION (or KUBELET_VERSION), CONTAINERD_VERSION, CNI_PLUGINS_VERSION,
# CRICTL_VERSION, WHEREABOUTS_VERSION, E2E_GOCACHE / E2E_GOMODCACHE (default: the caller's Go caches).
set -euo pipefail

E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/netdevice-plugin-e2e}
KUBE_VERSION=${KUBE_VERSION:-${KUBELET_VERSION:-v1.34.4}}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.1}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.0}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
WHEREABOUTS_VERSION=${WHEREABOUTS_VERSION:-v0.9.2}

if [[ -n "${E2E_GOCACHE:-}" ]]; then export GOCACHE=$E2E_GOCACHE; fi
if [[ -n "${E2E_GOMODCACHE:-}" ]]; then export GOMODCACHE=$E2E_GOMODCACHE; fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

log() { echo "e2e-deps: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# component_dir NAME VERSION -> cache directory of that build
component_dir() { echo "$E2E_CACHE_DIR/$1-$2"; }

# cached NAME VERSION RECIPE -> true when that component finished building with that recipe
cached() {
	local stamp
	stamp="$(component_dir "$1" "$2")/.done"
	[[ -f $stamp && "$(head -n 1 "$stamp")" == "$3" ]]
}

mark_done() { printf '%s\nbuilt %s\n' "$3" "$(date -u +%FT%TZ)" >"$(component_dir "$1" "$2")/.done"; }

# The Kubernetes commands the stack runs, all from one scratch module at one version so that they
# share the Go build cache: the kubelet, the control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler) and kubectl, all in k8s.io/kubernetes; and etcd, whose server main package is the
# root of go.etcd.io/etcd/server/v3, at the version kubernetes' own go.mod requires.
KUBE_COMMANDS=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {
	local dir src k8smod
	dir=$(component_dir kubernetes "$KUBE_VERSION")
	local recipe="r2 scratch-module CGO_ENABLED=0 version-ldflags ${KUBE_COMMANDS[*]} etcd-from-kubernetes-go.mod"
	cached kubernetes "$KUBE_VERSION" "$recipe" && return 0
	local t0=$SECONDS
	log "building kubernetes $KUBE_VERSION (${KUBE_COMMANDS[*]}) and etcd: 4-6 minutes on 2 cores from empty Go caches"
	src="$dir/src"
	rm -rf "${src:?}" "$dir/bin" && mkdir -p "$src" "$dir/bin"
	# kubernetes' go.mod requires its staging modules as v0.0.0 with local replaces; a scratch
	# module must replace each of them with the published v0.<minor>.<patch> tag.
	local staging=${KUBE_VERSION/#v1./v0.}
	k8smod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f "$k8smod" ]] || die "kubernetes $KUBE_VERSION go.mod not found after download"
	# etcd: the release kubernetes requires (and so tests against). Its server module's replace
	# directives only point its sibling modules (api, client/pkg, client/v3, pkg) at ../<dir> of the
	# same release; here they come from the build list, which must hold that same release (checked
	# below), so no replace is needed.
	local etcd_version
	etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$k8smod")
	[[ $etcd_version == v3.* ]] || die "kubernetes $KUBE_VERSION go.mod requires no go.etcd.io/etcd/server/v3"
	{
		echo "module e2e.local/kubernetes"
		echo
		echo "go 1.24"
		echo
		echo "require ("
		echo "	k8s.io/kubernetes $KUBE_VERSION"
		echo "	go.etcd.io/etcd/server/v3 $etcd_version"
		echo ")"
		echo
		awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$k8smod" | sort -u |
			while read -r m; do echo "replace $m => $m $staging"; done
	} >"$src/go.mod"
	[[ $(grep -c '^replace' "$src/go.mod") -gt 20 ]] || die "found too few staging modules in $k8smod"
	{
		echo "//go:build tools"
		echo
		echo "package tools"
		echo
		echo "import ("
		echo "	_ \"go.etcd.io/etcd/server/v3\""
		for c in "${KUBE_COMMANDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
		echo ")"
	} >"$src/tools.go"
	local vpkg=k8s.io/component-base/version minor pkgs=() c m v
	minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
	for c in "${KUBE_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	(
		cd "$src"
		for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3 go.etcd.io/etcd/server/v3; do
			v=$(go list -mod=mod -m -f '{{.Version}}' "$m")
			[[ $v == "$etcd_version" ]] || die "$m is $v in the build list, want etcd's $etcd_version"
		done
		CGO_ENABLED=0 go build -mod=mod -o "$dir/bin/" \
			-ldflags "-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean" \
			"${pkgs[@]}"
		# one build of its own: go build would name the binary after the module root ("server")
		CGO_ENABLED=0 go build -mod=mod -o "$dir/bin/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
	)
	for c in "${KUBE_COMMANDS[@]}"; do
		case $c in
		kubectl) "$dir/bin/kubectl" version --client 2>/dev/null ;;
		*) "$dir/bin/$c" --version ;;
		esac | grep -qF "$KUBE_VERSION" || die "$c reports the wrong version"
	done
	"$dir/bin/etcd" --version | grep -qF "etcd Version: ${etcd_version#v}" || die "etcd reports the wrong version"
	echo "$etcd_version" >"$dir/etcd-version"
	mark_done kubernetes "$KUBE_VERSION" "$recipe"
	log "built kubernetes $KUBE_VERSION and etcd $etcd_version in $((SECONDS - t0)) s"
}

# go_install NAME VERSION TAGS PKG... : go install the packages, static, into the component's bin dir
go_install() {
	local name=$1 version=$2 tags=$3
	shift 3
	local dir recipe="r1 CGO_ENABLED=0 tags=$tags $*"
	dir=$(component_dir "$name" "$version")
	cached "$name" "$version" "$recipe" && return 0
	log "building $name $version"
	rm -rf "${dir:?}/bin" && mkdir -p "$dir/bin"
	local p t0=$SECONDS
	for p in "$@"; do
		(cd "$dir" && GOBIN="$dir/bin" CGO_ENABLED=0 go install -tags "$tags" -ldflags "-s -w" "$p@$version")
	done
	mark_done "$name" "$version" "$recipe"
	log "built $name $version in $((SECONDS - t0)) s"
}

# whereabouts_module -> the whereabouts module's folder in the Go module cache (downloaded if need
# be): the source its binary is built from, and the CRDs and RBAC the cluster test applies from it.
whereabouts_module() {
	local d
	d=$(cd "$E2E_CACHE_DIR" && go mod download -json "github.com/k8snetworkplumbingwg/whereabouts@$WHEREABOUTS_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f "$d/go.mod" && -f "$d/cmd/whereabouts.go" ]] || die "whereabouts $WHEREABOUTS_VERSION: no module source after go mod download"
	echo "$d"
}

# build_whereabouts builds whereabouts' CNI IPAM plugin (the main package is cmd/, whose binary
# upstream names whereabouts) as upstream's hack/build-go.sh does: in its own module, with its own
# go.mod and go.sum (go install pkg@version refuses it: its go.mod has a replace directive), static,
# its version stamped.
build_whereabouts() {
	local dir src vpkg=github.com/k8snetworkplumbingwg/whereabouts/pkg/version
	local recipe="r1 module-go.mod CGO_ENABLED=0 -trimpath version-ldflags cmd"
	dir=$(component_dir whereabouts "$WHEREABOUTS_VERSION")
	cached whereabouts "$WHEREABOUTS_VERSION" "$recipe" && return 0
	local t0=$SECONDS
	log "building whereabouts $WHEREABOUTS_VERSION: about 80 s on 2 cores from empty Go caches"
	rm -rf "${dir:?}/bin" && mkdir -p "$dir/bin"
	src=$(whereabouts_module)
	(cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$dir/bin/whereabouts" \
		-ldflags "-s -w -X $vpkg.Version=$WHEREABOUTS_VERSION -X $vpkg.ReleaseStatus=released" ./cmd)
	# without CNI_COMMAND a CNI plugin prints its "about" line
	local about
	about=$("$dir/bin/whereabouts" 2>&1) || die "$dir/bin/whereabouts does not run: $about"
	[[ $about == *"whereabouts $WHEREABOUTS_VERSION "* ]] || die "whereabouts reports the wrong version: $about"
	mark_done whereabouts "$WHEREABOUTS_VERSION" "$recipe"
	log "built whereabouts $WHEREABOUTS_VERSION in $((SECONDS - t0)) s"
}

apt_install() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

main() {
	mkdir -p "$E2E_CACHE_DIR"
	# one build at a time per cache dir: a second caller waits instead of racing
	exec 9>"$E2E_CACHE_DIR/.lock"
	flock 9
	apt_install runc busybox-static pci.ids jq
	# no_btrfs: the btrfs snapshotter is the one part that needs cgo (and is disabled anyway)
	go_install containerd "$CONTAINERD_VERSION" no_btrfs \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr
	go_install cni-plugins "$CNI_PLUGINS_VERSION" "" \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/main/loopback \
		github.com/containernetworking/plugins/plugins/ipam/host-local
	go_install crictl "$CRICTL_VERSION" "" sigs.k8s.io/cri-tools/cmd/crictl
	build_whereabouts
	build_kubernetes

	if [[ "${1:-}" == "--print-env" ]]; then
		echo "E2E_BIN_KUBELET=$(component_dir kubernetes "$KUBE_VERSION")/bin"
		echo "E2E_BIN_KUBE=$(component_dir kubernetes "$KUBE_VERSION")/bin"
		echo "E2E_BIN_ETCD=$(component_dir kubernetes "$KUBE_VERSION")/bin"
		echo "E2E_BIN_CONTAINERD=$(component_dir containerd "$CONTAINERD_VERSION")/bin"
		echo "E2E_BIN_CNI=$(component_dir cni-plugins "$CNI_PLUGINS_VERSION")/bin"
		echo "E2E_BIN_CRICTL=$(component_dir crictl "$CRICTL_VERSION")/bin"
		echo "E2E_BIN_WHEREABOUTS=$(component_dir whereabouts "$WHEREABOUTS_VERSION")/bin"
		echo "E2E_WHEREABOUTS_MODULE=$(whereabouts_module)"
		echo "E2E_RUNC=$(command -v runc)"
		echo "E2E_BUSYBOX=$(command -v busybox)"
	fi
}

main "$@"
