package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TeardownState stops what st records and restores the host to st.Before, then checks it. Every step
// runs even when an earlier one failed; the error lists every failure and every difference left.
// It is idempotent: a second run (e.g. run.sh's trap after the test's own teardown) finds nothing.
func TeardownState(st State, p Paths, keepLogs bool, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	procs := map[string]Proc{}
	for _, pr := range st.Procs {
		procs[pr.Name] = pr // the latest start of a name wins (kubelet restarts)
	}

	// The kubelet first, so that it restarts nothing; then the runtime removes the pods, which runs
	// the poststop hooks (links go home) and the CNI DEL while the network plugin still works.
	if kl, ok := procs["kubelet"]; ok {
		fail(stopProc(kl, 15*time.Second))
	}
	if ctrd, ok := procs["containerd"]; ok && ctrd.Alive() {
		fail(removeAllPods(p, st))
	}
	for i := len(st.Procs) - 1; i >= 0; i-- {
		pr := st.Procs[i]
		if pr.Name == "containerd" || pr.Name == "kubelet" {
			continue
		}
		fail(stopProc(pr, 10*time.Second))
	}
	if ctrd, ok := procs["containerd"]; ok {
		fail(stopProc(ctrd, 15*time.Second))
	}
	// Leftovers: container processes in the kubelet's cgroups, and shims (they outlive containerd).
	for _, pid := range procsInCgroups(newCgroups(st)) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			fail(fmt.Errorf("kill container process %d: %w", pid, err))
		}
	}
	if shim, err := filepath.EvalSymlinks(st.Shim); err == nil {
		for _, sh := range procsByExe("containerd-shim", shim) {
			fail(stopProc(sh, 5*time.Second))
		}
	}

	fail(unmountOurs(st))
	for _, n := range added(st.Before.NetnsCNI, netnsCNI()) {
		if err := os.Remove(n); err != nil && !os.IsNotExist(err) {
			fail(fmt.Errorf("remove netns pin %s: %w", n, err))
		}
	}
	fail(removeCgroups(newCgroups(st)))
	fail(restoreSysctls(st.Before.Sysctls))
	fail(deleteLinks(st))
	for _, root := range WatchedPaths {
		before, existed := st.Before.Paths[root]
		fail(removeNew(root, before, existed))
	}
	fail(removeWork(st.Work, p.Logs, keepLogs))

	after, err := TakeSnapshot()
	if err != nil {
		fail(fmt.Errorf("snapshot host after teardown: %w", err))
	} else if diff := Diff(st.Before, after, st.Scope); len(diff) > 0 {
		fail(fmt.Errorf("host differs from before the run:\n  %s", strings.Join(diff, "\n  ")))
	}
	if len(errs) == 0 {
		logf("teardown: host restored and verified")
	}
	return errors.Join(errs...)
}

// removeAllPods stops and removes every pod sandbox through the runtime.
func removeAllPods(p Paths, st State) error {
	crictl := st.Crictl
	if crictl == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, crictl, "--config", p.CrictlConfig, "rmp", "--all", "--force").CombinedOutput()
	if err != nil {
		return fmt.Errorf("remove pods (crictl rmp --all --force): %w: %s", err, out)
	}
	return nil
}

// newCgroups lists the kubepods cgroup folders that did not exist before the run.
func newCgroups(st State) []string { return added(st.Before.Cgroups, kubepodsCgroups()) }

// removeCgroups removes cgroup folders, deepest first; a cgroup whose last process is still exiting
// is busy for a moment, so it retries for a few seconds.
func removeCgroups(roots []string) error {
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	var errs []error
	for _, d := range dirs {
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// unmountOurs unmounts every mount that appeared during the run in the stack's scope, deepest first.
func unmountOurs(st State) error {
	now, err := MountPoints()
	if err != nil {
		return err
	}
	var ours []string
	for _, m := range added(st.Before.Mounts, now) {
		if st.Scope.ourMount(m) {
			ours = append(ours, m)
		}
	}
	// the same point can be mounted more than once: unmount until it is gone
	sort.SliceStable(ours, func(i, j int) bool { return len(ours[i]) > len(ours[j]) })
	var errs []error
	for _, m := range ours {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

func restoreSysctls(before map[string]string) error {
	var errs []error
	for name, want := range before {
		file := sysctlPath(name)
		cur, err := os.ReadFile(file)
		if err == nil && strings.TrimSpace(string(cur)) == want {
			continue
		}
		if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, want, err))
		}
	}
	return errors.Join(errs...)
}

// deleteLinks deletes the links in scope that were not there before: the bridge, the tests' links,
// and CNI veths a failed CNI DEL left.
func deleteLinks(st State) error {
	before := map[string]bool{}
	for _, l := range st.Before.Links {
		before[l] = true
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list host links: %w", err)
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if before[name] || !st.Scope.ourLink(name) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// removeNew removes below root what is not in before (its entries when it existed, root itself when
// it did not). It refuses to remove anything with a mount point below it.
func removeNew(root string, before []string, existed bool) error {
	if _, err := os.Lstat(root); os.IsNotExist(err) {
		return nil
	}
	var victims []string
	if !existed {
		victims = []string{root}
	} else {
		now, err := listTree(root)
		if err != nil {
			return err
		}
		for _, e := range added(before, now) {
			victims = append(victims, filepath.Join(root, e))
		}
	}
	mounts, err := MountPoints()
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range victims {
		if m := mountBelow(mounts, v); m != "" {
			errs = append(errs, fmt.Errorf("not removing %s: %s is still mounted", v, m))
			continue
		}
		if err := os.RemoveAll(v); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

func mountBelow(mounts []string, dir string) string {
	for _, m := range mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			return m
		}
	}
	return ""
}

// removeWork removes the work folder, or all of it but the logs.
func removeWork(work, logs string, keepLogs bool) error {
	if work == "" {
		return nil
	}
	if !keepLogs {
		return removeNew(work, nil, false)
	}
	entries, err := os.ReadDir(work)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("clean work folder: %w", err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(work, e.Name())
		if p == logs {
			continue
		}
		errs = append(errs, removeNew(p, nil, false))
	}
	return errors.Join(errs...)
}
