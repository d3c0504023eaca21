#!/usr/bin/env bash
# Wall time of the whole `netdevice-plugin discover -o json` (process start, pci.ids load, scan of a
# generated sysfs tree of PFS x VFS functions, pools, JSON) over RUNS runs; prints each and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
PFS=${PFS:-8} VFS=${VFS:-128} RUNS=${RUNS:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/netdevice-plugin
root=$(go run ./pkg/pci/pcitest/genfixtures -pfs "$PFS" -vfs "$VFS" -out "$tmp/tree")
cat >"$tmp/config.yaml" <<'YAML'
resourceList:
  - resourceName: vfs
    resourcePrefix: example.com
    selectors:
      - drivers: ["iavf"]
YAML
pciids=()
[ -f /usr/share/misc/pci.ids ] && pciids=(--pci-ids /usr/share/misc/pci.ids)
times=()
for _ in $(seq "$RUNS"); do
	start=$(date +%s%N)
	"$tmp/netdevice-plugin" discover --config "$tmp/config.yaml" --sysfs-root "$root" --software-links=false \
		"${pciids[@]}" -o json >"$tmp/out.json"
	end=$(date +%s%N)
	times+=($(((end - start) / 1000000)))
done
devices=$(grep -c '"id"' "$tmp/out.json")
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(((RUNS + 1) / 2))p")
echo "discover -o json on ${PFS} PFs x ${VFS} VFs (${devices} devices): runs ms: ${times[*]}; median ${median} ms"
