#!/usr/bin/env bash
# Whole-process figures of the daemon on a generated sysfs tree of PFS x VFS functions (pools: VFs
# by PF in POOLS pools, plus one pool of veths for the link events): start -> every pool registered
# with its full list, link event -> ListAndWatch (single flips, and a burst), RSS, idle CPU over
# IDLE. Runs in a throwaway network namespace (root). LINKS=1 makes every VF netdev a link of that
# namespace too, as on real hardware. RESCAN sets --rescan-interval (default: the daemon's).
# PLUGIN=path measures that binary instead of one built here. Extra arguments go to `bench daemon`.
set -euo pipefail
cd "$(dirname "$0")/.."
PFS=${PFS:-8} VFS=${VFS:-128} POOLS=${POOLS:-6} IDLE=${IDLE:-60s} LINKS=${LINKS:-0} RESCAN=${RESCAN:-0}
tmp=$(mktemp -d)
ns="ndbench-$$"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/netdevice-plugin ./hack/bench
plugin=${PLUGIN:-$tmp/netdevice-plugin}
ip netns add "$ns"
ip -n "$ns" link set lo up
links=()
[ "$LINKS" = 1 ] && links=(-links)
BENCH_HOST_NETNS=$(readlink /proc/self/ns/net) ip netns exec "$ns" "$tmp/bench" daemon -plugin "$plugin" -pfs "$PFS" -vfs "$VFS" -pools "$POOLS" \
	-idle "$IDLE" -rescan "$RESCAN" "${links[@]}" "$@"
