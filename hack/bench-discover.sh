#!/usr/bin/env bash
# Whole `netdevice-plugin discover -o json` (process start, pci.ids, scan of a generated sysfs tree
# of PFS x VFS functions, pools, JSON) against the ghw floor program (hack/ghwfloor: ghw.PCI with
# its own pci.ids load, JSON out), RUNS runs each: median wall time and peak RSS. LINKS=1 makes
# every VF netdev a link of the (throwaway) network namespace and has discover list software
# links, as on a real node. PLUGIN=path measures that binary instead of one built here. Root: runs
# in a network namespace of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PFS=${PFS:-8} VFS=${VFS:-128} RUNS=${RUNS:-11} LINKS=${LINKS:-0}
tmp=$(mktemp -d)
ns="ndbench-$$"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/netdevice-plugin ./hack/bench ./hack/ghwfloor
plugin=${PLUGIN:-$tmp/netdevice-plugin}
ip netns add "$ns"
ip -n "$ns" link set lo up
links=()
[ "$LINKS" = 1 ] && links=(-links)
BENCH_HOST_NETNS=$(readlink /proc/self/ns/net) ip netns exec "$ns" "$tmp/bench" discover -plugin "$plugin" -floor "$tmp/ghwfloor" \
	-pfs "$PFS" -vfs "$VFS" -runs "$RUNS" "${links[@]}" "$@"
