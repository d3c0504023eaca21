package stack

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// Devices maps an extended resource name to device IDs, sorted.
type Devices map[string][]string

// Allocatable returns the devices the kubelet can allocate, as its pod-resources API reports them
// (GetAllocatableResources: the healthy devices of every registered plugin, allocated or not). A
// standalone kubelet has no Node object; this is the device manager's own view of capacity.
func (s *Stack) Allocatable(ctx context.Context) (Devices, error) {
	var out Devices
	err := s.podResources(ctx, func(c podresourcesv1.PodResourcesListerClient) error {
		resp, err := c.GetAllocatableResources(ctx, &podresourcesv1.AllocatableResourcesRequest{})
		if err != nil {
			return fmt.Errorf("GetAllocatableResources: %w", err)
		}
		out = Devices{}
		for _, d := range resp.GetDevices() {
			out[d.GetResourceName()] = append(out[d.GetResourceName()], d.GetDeviceIds()...)
		}
		return nil
	})
	out.sort()
	return out, err
}

// InUse returns the devices allocated to containers of running pods (pod-resources List).
func (s *Stack) InUse(ctx context.Context) (Devices, error) {
	var out Devices
	err := s.podResources(ctx, func(c podresourcesv1.PodResourcesListerClient) error {
		resp, err := c.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
		if err != nil {
			return fmt.Errorf("List: %w", err)
		}
		out = Devices{}
		for _, pod := range resp.GetPodResources() {
			for _, ctr := range pod.GetContainers() {
				for _, d := range ctr.GetDevices() {
					out[d.GetResourceName()] = append(out[d.GetResourceName()], d.GetDeviceIds()...)
				}
			}
		}
		return nil
	})
	out.sort()
	return out, err
}

func (d Devices) sort() {
	for _, ids := range d {
		sort.Strings(ids)
	}
}

func (s *Stack) podResources(ctx context.Context, call func(podresourcesv1.PodResourcesListerClient) error) error {
	sock := s.Paths.PodResourcesSocket()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("pod-resources API %s: %w", sock, err)
	}
	defer conn.Close()
	if err := call(podresourcesv1.NewPodResourcesListerClient(conn)); err != nil {
		return fmt.Errorf("pod-resources API %s: %w", sock, err)
	}
	return nil
}

// KubeletPods returns the kubelet's pods with their status (GET /pods on its HTTPS port; for static
// pods of a standalone kubelet the status is the kubelet's own, including admission rejections).
func (s *Stack) KubeletPods(ctx context.Context) ([]Pod, error) {
	url := fmt.Sprintf("https://127.0.0.1:%d/pods", s.Opts.Ports.Kubelet)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// The kubelet serves a self-signed certificate on loopback only.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet %s: %s: %s", url, resp.Status, body)
	}
	var list struct {
		Items []Pod `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("kubelet %s: decode pod list: %w", url, err)
	}
	return list.Items, nil
}

// KubeletPod returns the kubelet's pod whose name is name (static pods are named
// <manifest name>-<node name>).
func (s *Stack) KubeletPod(ctx context.Context, name string) (*Pod, error) {
	pods, err := s.KubeletPods(ctx)
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if pods[i].Metadata.Name == name {
			return &pods[i], nil
		}
	}
	return nil, fmt.Errorf("kubelet has no pod %s (%d pods)", name, len(pods))
}

// PodName is the name the kubelet gives the static pod of a manifest whose metadata.name is name.
func (s *Stack) PodName(name string) string { return name + "-" + s.Opts.NodeName }

// Pod is the part of a v1.Pod the tests read from the kubelet. Declared here because k8s.io/api's
// core types would pull half of apimachinery's dependencies into go.sum for four fields.
type Pod struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase             string            `json:"phase"`
		Reason            string            `json:"reason"`
		Message           string            `json:"message"`
		ContainerStatuses []ContainerStatus `json:"containerStatuses"`
	} `json:"status"`
}

// ContainerStatus is the part of a v1.ContainerStatus the tests read.
type ContainerStatus struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	ContainerID  string `json:"containerID"`
}
