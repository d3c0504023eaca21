package kubelettest

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// PodResources stands in for the kubelet's pod-resources API (List) on a real unix socket. Tests
// say which pod holds which devices, as the kubelet's device manager would after Allocate.
type PodResources struct {
	podresourcesv1.UnimplementedPodResourcesListerServer

	socket string
	srv    *grpc.Server

	mu    sync.Mutex
	held  map[podKey]map[string][]string // pod -> resource -> device IDs
	fail  error                          // when set, List answers it
	calls int
}

type podKey struct{ namespace, name string }

// StartPodResources serves the API at socket until Close.
func StartPodResources(socket string) (*PodResources, error) {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("pod-resources stand-in: %w", err)
	}
	p := &PodResources{socket: socket, srv: grpc.NewServer(), held: map[podKey]map[string][]string{}}
	podresourcesv1.RegisterPodResourcesListerServer(p.srv, p)
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Socket is the API's socket path.
func (p *PodResources) Socket() string { return p.socket }

// Hold records that pod namespace/name holds the devices of resource.
func (p *PodResources) Hold(namespace, name, resource string, ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := podKey{namespace, name}
	if p.held[k] == nil {
		p.held[k] = map[string][]string{}
	}
	p.held[k][resource] = append(p.held[k][resource], ids...)
}

// Release forgets the pod, as the kubelet does once it is deleted.
func (p *PodResources) Release(namespace, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, podKey{namespace, name})
}

// Fail makes List answer err (nil: answer again).
func (p *PodResources) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

// Calls is how many List calls were answered or failed.
func (p *PodResources) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// List implements the API: one container per pod, holding every device recorded for it.
func (p *PodResources) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		return nil, p.fail
	}
	keys := make([]podKey, 0, len(p.held))
	for k := range p.held {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].namespace+"/"+keys[i].name < keys[j].namespace+"/"+keys[j].name })
	resp := &podresourcesv1.ListPodResourcesResponse{}
	for _, k := range keys {
		ctr := &podresourcesv1.ContainerResources{Name: "app"}
		resources := make([]string, 0, len(p.held[k]))
		for r := range p.held[k] {
			resources = append(resources, r)
		}
		sort.Strings(resources)
		for _, r := range resources {
			ctr.Devices = append(ctr.Devices, &podresourcesv1.ContainerDevices{ResourceName: r, DeviceIds: append([]string(nil), p.held[k][r]...)})
		}
		resp.PodResources = append(resp.PodResources, &podresourcesv1.PodResources{Namespace: k.namespace, Name: k.name, Containers: []*podresourcesv1.ContainerResources{ctr}})
	}
	return resp, nil
}

// Close stops serving and removes the socket.
func (p *PodResources) Close() {
	p.srv.Stop()
	_ = os.Remove(p.socket)
}
