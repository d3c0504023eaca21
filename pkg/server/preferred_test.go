package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// node builds VFs: n VFs of PF pf (bus byte), NUMA node numa, VF addresses 0000:<bus>:<dev>.<fn>.
func vfsOf(bus, n, numa int, firstDev int) []Device {
	pf := fmt.Sprintf("0000:%02x:00.0", bus)
	out := make([]Device, n)
	for i := range out {
		addr := fmt.Sprintf("0000:%02x:%02x.%d", bus, firstDev+i/8, i%8)
		out[i] = vf(addr, pf, numa)
	}
	return out
}

func ids(devs []Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}

func TestPrefer(t *testing.T) {
	// NUMA 0: PF 3b with 2 VFs, PF 3c with 4 VFs. NUMA 1: PF 86 with 3 VFs, PF 87 with 1 VF.
	a := vfsOf(0x3b, 2, 0, 2) // 0000:3b:02.0-1
	b := vfsOf(0x3c, 4, 0, 2) // 0000:3c:02.0-3
	c := vfsOf(0x86, 3, 1, 2) // 0000:86:02.0-2
	d := vfsOf(0x87, 1, 1, 2) // 0000:87:02.0
	all := slices.Concat(a, b, c, d)
	sick := vf("0000:3c:03.0", "0000:3c:00.0", 0)
	sick.Problem = "carrier down"
	links := []Device{{ID: "dummy0", NUMANode: -1}, {ID: "dummy1", NUMANode: -1}, {ID: "veth0", NUMANode: -1}}
	tests := []struct {
		name      string
		devs      []Device
		available []string
		must      []string
		size      int
		want      []string
	}{
		{"one device: fullest PF of the node that fits with fewest PFs", all, ids(all), nil, 1, []string{"0000:3c:02.0"}},
		{"fits one PF on NUMA 0", all, ids(all), nil, 4, ids(b)},
		{"NUMA 1 needs one PF for 3, NUMA 0 too: lower node", all, ids(all), nil, 3, ids(b[:3])},
		{"NUMA 0 has 6: two PFs, fullest first", all, ids(all), nil, 5, slices.Concat(ids(a[:1]), ids(b))},
		{"must-include pulls its node", all, ids(all), []string{"0000:87:02.0"}, 3, []string{"0000:87:02.0", "0000:86:02.0", "0000:86:02.1"}},
		{"must-include pulls its PF", all, ids(all), []string{"0000:3b:02.1"}, 2, []string{"0000:3b:02.1", "0000:3b:02.0"}},
		{"no node fits: spans nodes, largest node first", all, ids(all), nil, 8, slices.Concat(ids(a), ids(b), ids(c[:2]))},
		{"only available IDs", all, []string{"0000:86:02.2", "0000:3b:02.0", "0000:87:02.0"}, nil, 2, []string{"0000:86:02.2", "0000:87:02.0"}},
		{"unhealthy and unknown skipped", append(slices.Clone(b), sick), []string{"0000:3c:03.0", "0000:ff:00.0", "0000:3c:02.3"}, nil, 2, []string{"0000:3c:02.3"}},
		{"software links: lowest names", links, []string{"veth0", "dummy1", "dummy0"}, nil, 2, []string{"dummy0", "dummy1"}},
		{"must-include only", links, ids(links), []string{"veth0", "dummy0"}, 2, []string{"veth0", "dummy0"}},
		{"size zero", links, ids(links), nil, 0, nil},
		{"duplicates in available", links, []string{"dummy1", "dummy1", "veth0"}, nil, 2, []string{"dummy1", "veth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := build(resA, tt.devs)
			got := prefer(s.byID, tt.available, tt.must, tt.size)
			if !slices.Equal(got, tt.want) {
				t.Errorf("prefer(size %d, must %v) = %v, want %v", tt.size, tt.must, got, tt.want)
			}
			// Deterministic whatever the order the kubelet lists devices in.
			rev := slices.Clone(tt.available)
			slices.Reverse(rev)
			if again := prefer(s.byID, rev, tt.must, tt.size); !slices.Equal(again, got) {
				t.Errorf("reversed input gave %v, first answer %v", again, got)
			}
		})
	}
}

func TestGetPreferredAllocationOverGRPC(t *testing.T) {
	devs := slices.Concat(vfsOf(0x3b, 4, 0, 2), vfsOf(0x86, 4, 1, 2))
	_, p := served(t, resA, devs)
	resp, err := p.Client.GetPreferredAllocation(ctxTimeout(t, 5*time.Second), &pluginapi.PreferredAllocationRequest{
		ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
			{AvailableDeviceIDs: ids(devs), MustIncludeDeviceIDs: []string{"0000:86:02.3"}, AllocationSize: 2},
			{AvailableDeviceIDs: ids(devs), AllocationSize: 3},
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"0000:86:02.3", "0000:86:02.0"}, {"0000:3b:02.0", "0000:3b:02.1", "0000:3b:02.2"}}
	for i, cr := range resp.ContainerResponses {
		if !slices.Equal(cr.DeviceIDs, want[i]) {
			t.Errorf("container %d: preferred %v, want %v", i, cr.DeviceIDs, want[i])
		}
	}
}
