// Package podresources asks the kubelet which devices its containers hold, through the kubelet's
// pod-resources API (k8s.io/kubelet podresources v1, List). The daemon uses the answer to release
// what only an allocated device may keep: its device-information file, its IP addresses, its place
// in a pool while its link is inside a pod.
package podresources

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// DefaultSocket is where the kubelet serves the API (<root-dir>/pod-resources/kubelet.sock).
const DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// DefaultTimeout bounds one List call; the kubelet answers from memory.
const DefaultTimeout = 5 * time.Second

// maxMessageBytes is the largest answer accepted: the kubelet's own limit for this API is 16 MiB.
const maxMessageBytes = 16 << 20

// Pod names a pod that holds a device.
type Pod struct{ Namespace, Name string }

// Held maps an extended resource ("intel.com/sriov_a") to each held device ID and the pods that
// hold it (a device is held by one pod, but the API would report more if the kubelet said so).
type Held map[string]map[string][]Pod

// Holds reports whether the device of the resource is held by some container.
func (h Held) Holds(resource, id string) bool { return len(h[resource][id]) > 0 }

// Holders returns the pods holding the device, sorted.
func (h Held) Holders(resource, id string) []Pod { return h[resource][id] }

// Client calls the pod-resources API on one socket.
type Client struct {
	socket  string
	timeout time.Duration
}

// New returns a client of the API at socket ("" means DefaultSocket).
func New(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	return &Client{socket: socket, timeout: DefaultTimeout}
}

// Socket is the path the client calls.
func (c *Client) Socket() string { return c.socket }

// Held lists the devices held by the containers of the pods the kubelet runs (List). An error
// means the kubelet could not be asked; callers must then keep what they would have released.
func (c *Client) Held(ctx context.Context) (Held, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("pod-resources API %s: %w", c.socket, err)
	}
	defer conn.Close()
	resp, err := podresourcesv1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("pod-resources API %s: List: %w", c.socket, err)
	}
	return fromList(resp), nil
}

func fromList(resp *podresourcesv1.ListPodResourcesResponse) Held {
	held := Held{}
	for _, pr := range resp.GetPodResources() {
		pod := Pod{Namespace: pr.GetNamespace(), Name: pr.GetName()}
		for _, ctr := range pr.GetContainers() {
			for _, d := range ctr.GetDevices() {
				byID := held[d.GetResourceName()]
				if byID == nil {
					byID = map[string][]Pod{}
					held[d.GetResourceName()] = byID
				}
				for _, id := range d.GetDeviceIds() {
					if !containsPod(byID[id], pod) {
						byID[id] = append(byID[id], pod)
					}
				}
			}
		}
	}
	for _, byID := range held {
		for _, pods := range byID {
			sort.Slice(pods, func(i, j int) bool {
				if pods[i].Namespace != pods[j].Namespace {
					return pods[i].Namespace < pods[j].Namespace
				}
				return pods[i].Name < pods[j].Name
			})
		}
	}
	return held
}

func containsPod(pods []Pod, p Pod) bool {
	for _, q := range pods {
		if q == p {
			return true
		}
	}
	return false
}
