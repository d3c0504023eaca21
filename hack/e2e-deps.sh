#!/usr/bin/env bash
# Builds (or reuses) the end-to-end stack: kubelet, containerd + shim + ctr, CNI plugins, crictl,
# and installs Debian's runc and busybox-static. Every Go component is cached by version under
# $E2E_CACHE_DIR/<component>-<version>/bin and marked complete by a .done stamp holding its build
# recipe, so a warm run only compares stamps and a changed recipe rebuilds. All Go binaries are
# static (CGO_ENABLED=0): a fresh machine needs no C toolchain. Prints nothing on stdout but, with
# --print-env, the E2E_* variables test/e2e/run.sh reads.
#
# Env overrides: E2E_CACHE_DIR, KUBELET_VERSION, CONTAINERD_VERSION, CNI_PLUGINS_VERSION,
# CRICTL_VERSION, E2E_GOCACHE / E2E_GOMODCACHE (default: the caller's Go caches).
set -euo pipefail

E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/netdevice-plugin-e2e}
KUBELET_VERSION=${KUBELET_VERSION:-v1.34.4}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.1}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.0}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}

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

build_kubelet() {
	local dir src k8smod
	dir=$(component_dir kubelet "$KUBELET_VERSION")
	local recipe="r1 scratch-module CGO_ENABLED=0 version-ldflags"
	cached kubelet "$KUBELET_VERSION" "$recipe" && return 0
	log "building kubelet $KUBELET_VERSION (about 5 minutes on 2 cores)"
	src="$dir/src"
	rm -rf "${src:?}" && mkdir -p "$src" "$dir/bin"
	# kubernetes' go.mod requires its staging modules as v0.0.0 with local replaces; a scratch
	# module must replace each of them with the published v0.<minor>.<patch> tag.
	local staging=${KUBELET_VERSION/#v1./v0.}
	k8smod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$KUBELET_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f "$k8smod" ]] || die "kubernetes $KUBELET_VERSION go.mod not found after download"
	{
		echo "module e2e.local/kubelet"
		echo
		echo "go 1.24"
		echo
		echo "require k8s.io/kubernetes $KUBELET_VERSION"
		echo
		awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$k8smod" | sort -u |
			while read -r m; do echo "replace $m => $m $staging"; done
	} >"$src/go.mod"
	[[ $(grep -c '^replace' "$src/go.mod") -gt 20 ]] || die "found too few staging modules in $k8smod"
	cat >"$src/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
EOF
	local vpkg=k8s.io/component-base/version minor
	minor=$(echo "$KUBELET_VERSION" | cut -d. -f2)
	(
		cd "$src"
		go get "k8s.io/kubernetes/cmd/kubelet@$KUBELET_VERSION"
		CGO_ENABLED=0 go build -mod=mod -o "$dir/bin/kubelet" \
			-ldflags "-s -w -X $vpkg.gitVersion=$KUBELET_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean" \
			k8s.io/kubernetes/cmd/kubelet
	)
	"$dir/bin/kubelet" --version | grep -qF "$KUBELET_VERSION" || die "kubelet reports the wrong version"
	mark_done kubelet "$KUBELET_VERSION" "$recipe"
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
	local p
	for p in "$@"; do
		(cd "$dir" && GOBIN="$dir/bin" CGO_ENABLED=0 go install -tags "$tags" -ldflags "-s -w" "$p@$version")
	done
	mark_done "$name" "$version" "$recipe"
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
	apt_install runc busybox-static
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
	build_kubelet

	if [[ "${1:-}" == "--print-env" ]]; then
		echo "E2E_BIN_KUBELET=$(component_dir kubelet "$KUBELET_VERSION")/bin"
		echo "E2E_BIN_CONTAINERD=$(component_dir containerd "$CONTAINERD_VERSION")/bin"
		echo "E2E_BIN_CNI=$(component_dir cni-plugins "$CNI_PLUGINS_VERSION")/bin"
		echo "E2E_BIN_CRICTL=$(component_dir crictl "$CRICTL_VERSION")/bin"
		echo "E2E_RUNC=$(command -v runc)"
		echo "E2E_BUSYBOX=$(command -v busybox)"
	fi
}

main "$@"
