#!/usr/bin/env bash
# make kind-demo: a kind cluster, the plugin, dummy0 on one worker, and the seed demo pod getting it.
# Needs docker, kind and kubectl.
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=netdevice
image=ghcr.io/netdevice-plugin/netdevice-plugin:dev # deploy/overlays/dev names it
worker=${cluster}-worker

kind get clusters | grep -qx "$cluster" || kind create cluster --config deploy/kind/kind-config.yaml
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

# The seed demo's link: dummy0 with an address, on one worker.
docker exec "$worker" sh -c 'ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy;
  ip addr replace 192.168.8.8/32 dev dummy0; ip link set dummy0 up'

kubectl apply -k deploy/overlays/dev
kubectl -n netdevice-plugin rollout status daemonset/netdevice-plugin --timeout=180s
echo "waiting for ${worker} to offer networking.k8s.io/netdevice"
for _ in $(seq 60); do
	n=$(kubectl get node "$worker" -o jsonpath='{.status.allocatable.networking\.k8s\.io/netdevice}')
	[ "${n:-0}" -ge 1 ] && break
	sleep 2
done
kubectl get node "$worker" -o jsonpath='{.status.allocatable}'; echo

kubectl apply -f deploy/kind/demo-pod.yaml
kubectl wait --for=condition=Ready pod/test --timeout=180s
kubectl exec test -- ip addr show dummy0
