package defroute

import (
	"maps"
	"reflect"
	"slices"
	"testing"
)

// The rule over plain nodes, as a caller keeping links from events applies it: the same answers
// Read derives from a dump (TestCarriers, TestUppers).
func TestRuleOverNodes(t *testing.T) {
	// 1 lo; 2 eth0 (bond port of 4); 3 eth1 (bond port of 4); 4 bond0 under br0 (5); 5 br0;
	// 6 vlan on eth1 (lower 3); 7 veth (no lowers); 8 macvlan on 7.
	nodes := []Node{
		{Index: 1}, {Index: 2, Master: 4}, {Index: 3, Master: 4}, {Index: 4, Master: 5}, {Index: 5},
		{Index: 6, Lowers: []int{3}}, {Index: 7}, {Index: 8, Lowers: []int{7}},
	}
	tests := []struct {
		name   string
		routes []int
		want   []int
	}{
		{"no default route", nil, nil},
		{"on the bridge: the bond and its ports", []int{5}, []int{2, 3, 4, 5}},
		{"on the vlan: its lower device, not the lower's master", []int{6}, []int{3, 6}},
		{"on the macvlan: the veth beneath", []int{8}, []int{7, 8}},
		{"index 0 ignored", []int{0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(CarriersOf(nodes, tt.routes)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("CarriersOf(%v) = %v, want %v", tt.routes, got, tt.want)
			}
		})
	}
	wantUp := map[int][]int{2: {4}, 3: {4, 6}, 4: {5}, 7: {8}}
	if got := UppersOf(nodes); !reflect.DeepEqual(got, wantUp) {
		t.Errorf("UppersOf = %v, want %v", got, wantUp)
	}
}
