package server

import (
	"cmp"
	"slices"
)

// prefer chooses size device IDs for one container: every must-include ID first (the kubelet
// insists on them), then available, healthy devices of the pool: all from one NUMA node when one
// node has enough (the must-include devices' node first), packed on the fewest PFs (the
// must-include devices' PFs first, then the PFs with the most free VFs), lowest IDs first. The
// answer is a function of its inputs only, so the kubelet sees the same choice every time.
func prefer(byID map[string]*entry, available, must []string, size int) []string {
	if size <= 0 {
		return nil
	}
	out := make([]string, 0, size)
	chosen := make([]bool, len(byID)) // by rank
	mustNUMA := map[int]bool{}
	mustPF := map[string]bool{}
	for _, id := range must {
		if len(out) == size {
			return out
		}
		e, known := byID[id]
		if (known && chosen[e.rank]) || (!known && slices.Contains(out, id)) {
			continue
		}
		out = append(out, id)
		if known {
			chosen[e.rank] = true
			mustNUMA[e.NUMANode] = true
			mustPF[pfKey(e)] = true
		}
	}
	need := size - len(out)
	if need == 0 {
		return out
	}
	cands := make([]*entry, 0, len(available))
	for _, id := range available {
		e, ok := byID[id]
		if !ok || !e.healthy || e.Gone || chosen[e.rank] {
			continue
		}
		chosen[e.rank] = true // also drops duplicates in available
		cands = append(cands, e)
	}
	slices.SortFunc(cands, func(a, b *entry) int { return a.rank - b.rank })

	picked := make([]*entry, 0, need)
	for _, node := range orderNodes(cands, need, mustNUMA, mustPF) {
		take := min(need-len(picked), len(node))
		picked = append(picked, pack(node, take, mustPF)...)
		if len(picked) == need {
			break
		}
	}
	slices.SortFunc(picked, func(a, b *entry) int { return a.rank - b.rank })
	for _, e := range picked {
		out = append(out, e.ID)
	}
	return out
}

// pfKey is the unit packing counts: a VF's PF. Devices that are not VFs share one unit, so they
// are simply taken lowest ID first.
func pfKey(e *entry) string { return e.PFPCIAddress }

// orderNodes groups candidates by NUMA node (each group in ID order) and orders the groups: when
// one node alone can serve need devices, that node only, preferring the must-include devices'
// node, then the node needing the fewest PFs, then the lowest node (no node last); otherwise every
// node, the must-include devices' node first, then the largest.
func orderNodes(cands []*entry, need int, mustNUMA map[int]bool, mustPF map[string]bool) [][]*entry {
	byNode := map[int][]*entry{}
	for _, e := range cands {
		byNode[e.NUMANode] = append(byNode[e.NUMANode], e)
	}
	type group struct {
		node   int
		devs   []*entry
		pfs    int // PFs needed to take need devices from this node alone; 0 if it cannot
		isMust bool
	}
	groups := make([]group, 0, len(byNode))
	fits := false
	for n, devs := range byNode {
		g := group{node: n, devs: devs, isMust: mustNUMA[n]}
		if len(devs) >= need {
			g.pfs = len(packOrder(devs, mustPF, need))
			fits = true
		}
		groups = append(groups, g)
	}
	nodeOrder := func(a, b group) int { // real nodes ascending, "no node" (-1) last
		return cmp.Or(cmp.Compare(boolRank(a.node < 0), boolRank(b.node < 0)), cmp.Compare(a.node, b.node))
	}
	if fits {
		groups = slices.DeleteFunc(groups, func(g group) bool { return g.pfs == 0 })
		slices.SortFunc(groups, func(a, b group) int {
			return cmp.Or(cmp.Compare(boolRank(!a.isMust), boolRank(!b.isMust)), cmp.Compare(a.pfs, b.pfs), nodeOrder(a, b))
		})
		return [][]*entry{groups[0].devs}
	}
	slices.SortFunc(groups, func(a, b group) int {
		return cmp.Or(cmp.Compare(boolRank(!a.isMust), boolRank(!b.isMust)), cmp.Compare(len(b.devs), len(a.devs)), nodeOrder(a, b))
	})
	out := make([][]*entry, len(groups))
	for i, g := range groups {
		out[i] = g.devs
	}
	return out
}

// pack takes k devices from devs (in ID order) on the fewest PFs.
func pack(devs []*entry, k int, mustPF map[string]bool) []*entry {
	out := make([]*entry, 0, k)
	for _, pf := range packOrder(devs, mustPF, k) {
		out = append(out, pf[:min(k-len(out), len(pf))]...)
	}
	return out
}

// packOrder groups devs by PF and returns the groups needed to reach k devices, in the order they
// are used: must-include PFs first, then the fullest, then the lowest PF address. Taking the
// largest groups first needs the fewest groups to reach any count.
func packOrder(devs []*entry, mustPF map[string]bool, k int) [][]*entry {
	byPF := map[string][]*entry{}
	var keys []string
	for _, e := range devs {
		key := pfKey(e)
		if _, ok := byPF[key]; !ok {
			keys = append(keys, key)
		}
		byPF[key] = append(byPF[key], e)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(boolRank(!mustPF[a]), boolRank(!mustPF[b])), cmp.Compare(len(byPF[b]), len(byPF[a])), cmp.Compare(a, b))
	})
	var out [][]*entry
	for n, i := 0, 0; n < k && i < len(keys); i++ {
		out = append(out, byPF[keys[i]])
		n += len(byPF[keys[i]])
	}
	return out
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
