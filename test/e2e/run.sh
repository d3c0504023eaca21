#!/usr/bin/env bash
# End-to-end tests against a real kubelet, containerd and runc on this machine (root).
#
#   test/e2e/run.sh            everything: the smoke test, the standalone-kubelet scenarios (IPAM and RDMA
#                              among them), and the cluster (control plane from source, the plugin installed with
#                              kubectl apply -k, six scenarios, whereabouts among them); exit non-zero on any failure
#   test/e2e/run.sh cluster    only the cluster test
#   test/e2e/run.sh scenarios  only the standalone-kubelet scenarios (TestScenarios, TestRDMA)
#   test/e2e/run.sh smoke      only the smoke test (needs no device plugin)
#   test/e2e/run.sh demo       the seed demo for a person, on the cluster: the README's install,
#                              dummy0 on the node, the node's allocatable, kubectl exec ... ip a in
#                              the seed's pod; tears everything down
#   test/e2e/run.sh teardown   tear down whatever a killed run left (state files under E2E_WORK_ROOT)
#
# It refuses to start (exit 1, nothing changed on the host) where another kubelet or container
# runtime runs: /run/containerd/containerd.sock answers, the kubelet ports 10250/10248 are taken, a
# kubelet process runs, or another kubelet's device-plugin folder or kubepods cgroups are there; for
# the cluster also where the control plane's ports (6443, 2379, 2380, 10257, 10259) or the plugin's
# (9402) are taken, /var/lib/kubelet holds files, or netdevice-plugin is installed on the host.
#
# Environment: E2E_CACHE_DIR (built stack binaries, see hack/e2e-deps.sh), E2E_WORK_ROOT (default
# /var/tmp/ndp-e2e), E2E_KEEP_LOGS=1 (keep logs of a passing run), E2E_RUN (a -test.run regexp),
# E2E_HOLD=60s (smoke/demo: keep the pod up that long before deleting it, to look around),
# E2E_PLUGIN + E2E_HOOK (absolute paths: test these binaries instead of building ./cmd/...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-all}
WORK_ROOT=${E2E_WORK_ROOT:-/var/tmp/ndp-e2e} # short: plugin sockets live below it
LOCK=/run/lock/netdevice-plugin-e2e.lock

log() { echo "run.sh: $*" >&2; }

CLUSTER=-e2e.cluster=true
case "$MODE" in
all) RUN='^(TestSmoke|TestScenarios|TestRDMA|TestCluster)$' ;;
cluster) RUN='^TestCluster$' ;;
smoke) RUN='^TestSmoke$' CLUSTER= ;;
scenarios) RUN='^(TestScenarios|TestRDMA)$' CLUSTER= ;;
demo) RUN='^TestClusterDemo$' ;;
teardown) RUN= ;;
*)
	echo "usage: $0 [all|cluster|scenarios|smoke|demo|teardown]" >&2
	exit 2
	;;
esac
RUN=${E2E_RUN:-$RUN}
[[ $(id -u) == 0 ]] || {
	log "must run as root (it starts a kubelet and moves network links)"
	exit 1
}

# One run at a time on a machine: the kubelet's ports and /var/lib/kubelet/device-plugins are shared.
mkdir -p "$(dirname "$LOCK")" "$WORK_ROOT"
exec 8>"$LOCK"
if ! flock -n 8; then
	log "another end-to-end run holds $LOCK; waiting"
	flock 8
fi

# teardown_leftovers tears down every stack whose state file is still there (a run that was killed
# before its own teardown), with the test binary's teardown mode. That removes only what the state
# file records as the stack's own (its processes, work folder, links, cgroups, the kubelet's and
# shims' entries it created) and restores a sysctl only while it holds the kubelet's value: anything
# installed on the host since the killed run is left alone, and reported if the host differs.
teardown_leftovers() {
	local bin=$1 rc=0 st
	for st in "$WORK_ROOT"/*/*/state.json; do
		[[ -f $st ]] || continue
		log "tearing down the stack recorded in $st"
		"$bin" -e2e.teardown "$st" || rc=1
	done
	return $rc
}

cd "$ROOT"
T0=$(date +%s)
RUN_DIR=$(mktemp -d "$WORK_ROOT/XXXXXX")
BIN=$RUN_DIR/bin
mkdir -p "$BIN"
log "building the test binaries into $BIN"
CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./test/e2e/agnhost ./test/e2e/pause
go test -c -tags e2e -o "$BIN/e2e.test" ./test/e2e
export E2E_AGNHOST=$BIN/agnhost E2E_PAUSE=$BIN/pause
T_TEST_BUILD=$(date +%s)

# Leftovers of killed runs first, with the binary just built.
LEFTOVER_RC=0
teardown_leftovers "$BIN/e2e.test" || LEFTOVER_RC=1
if [[ $MODE == teardown ]]; then
	rm -rf "$RUN_DIR"
	rmdir "$WORK_ROOT" 2>/dev/null || true
	[[ $LEFTOVER_RC == 0 ]] || log "tearing down a killed run's leftovers failed (see above)"
	exit $LEFTOVER_RC
fi
[[ $LEFTOVER_RC == 0 ]] || log "WARNING: tearing down a previous run's leftovers failed"

# Refuse a host where another kubelet or container runtime runs, before anything is installed there.
if ! "$BIN/e2e.test" -e2e.preflight $CLUSTER; then
	rm -rf "$RUN_DIR"
	rmdir "$WORK_ROOT" 2>/dev/null || true
	exit 1
fi

log "building or reusing the stack binaries (hack/e2e-deps.sh)"
ENV_LINES=$(hack/e2e-deps.sh --print-env)
while IFS='=' read -r k v; do
	[[ $k == E2E_* ]] && export "$k=$v"
done <<<"$ENV_LINES"
T_DEPS=$(date +%s)

if [[ $MODE != smoke && -n ${E2E_PLUGIN:-} && -n ${E2E_HOOK:-} ]]; then
	log "using the given binaries E2E_PLUGIN=$E2E_PLUGIN E2E_HOOK=$E2E_HOOK"
	export E2E_PLUGIN E2E_HOOK
elif [[ $MODE != smoke ]]; then
	log "building netdevice-plugin and netdevice-hook (go build -o bin/ ./cmd/...)"
	if CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/... >"$RUN_DIR/plugin-build.log" 2>&1 &&
		[[ -x bin/netdevice-plugin && -x bin/netdevice-hook ]]; then
		export E2E_PLUGIN=$ROOT/bin/netdevice-plugin E2E_HOOK=$ROOT/bin/netdevice-hook
	else
		E2E_PLUGIN_BUILD_ERROR=$(tail -n 30 "$RUN_DIR/plugin-build.log")
		[[ -n $E2E_PLUGIN_BUILD_ERROR ]] || E2E_PLUGIN_BUILD_ERROR="bin/netdevice-plugin or bin/netdevice-hook missing after the build"
		export E2E_PLUGIN_BUILD_ERROR
		log "the plugin does not build; the scenarios will fail:"
		echo "$E2E_PLUGIN_BUILD_ERROR" >&2
	fi
fi
T_BUILD=$(date +%s)

# Whatever happens from here (failure, Ctrl-C, TERM), the host is restored.
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	teardown_leftovers "$BIN/e2e.test" || rc=1
	if [[ $rc == 0 && -z ${E2E_KEEP_LOGS:-} ]]; then
		rm -rf "$RUN_DIR"
		rmdir "$WORK_ROOT" 2>/dev/null || true # only when no other run's folder is left
	else
		log "work folder kept: $RUN_DIR"
	fi
	log "total $(($(date +%s) - T0)) s (test binaries $((T_TEST_BUILD - T0)) s, stack binaries $((T_DEPS - T_TEST_BUILD)) s, project build $((T_BUILD - T_DEPS)) s, tests $(($(date +%s) - T_BUILD)) s); exit $rc"
	exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

args=(-test.run "$RUN" -test.timeout 0 -test.count 1 -e2e.work "$RUN_DIR")
[[ $MODE == demo ]] || args+=(-test.v)
[[ -z ${E2E_KEEP_LOGS:-} ]] || args+=(-e2e.keep-logs)
[[ -z ${E2E_HOLD:-} ]] || args+=(-e2e.hold "$E2E_HOLD")
log "running ${args[*]}"
(cd "$ROOT/test/e2e" && "$BIN/e2e.test" "${args[@]}")
