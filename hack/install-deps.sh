#!/usr/bin/env bash
# Installs the system packages the tests and the demo need on a fresh Debian 12 machine. Idempotent:
# packages already present are not fetched again.
set -euo pipefail

# iproute2: ip netns/link for tests; pci.ids: vendor and device names (never fetched at run time);
# runc and busybox-static: the end-to-end container runtime and pod image; util-linux: unshare, flock.
packages=(iproute2 pci.ids runc busybox-static util-linux kmod)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || { echo "install-deps: go not on PATH (need Go 1.26)" >&2; exit 1; }
