package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TeardownState stops the processes st records and removes what st.Owned records as the stack's
// (plus what is tied to it by name or content, see hostLayout), then verifies the host against
// st.Before. Nothing is removed for being new since the snapshot: a killed run's snapshot can be old,
// and what was installed since is not the stack's. Every step runs even when an earlier one failed;
// the error lists every failure and every difference left. The state file stays when something the
// stack owns could not be removed, so that a later teardown tries again; otherwise the work folder
// goes (but for its logs when keepLogs). It is idempotent: a second run finds nothing. live says the
// stack's processes ran in this process until now (Stack.Teardown): then what they created on the
// host since the recorder's last look is recorded too, once they are stopped.
func TeardownState(st State, p Paths, keepLogs, live bool, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The containerd folders still name every sandbox and container: record them before the
	// runtime removes them, so that a teardown killed midway still knows their host entries.
	if st.Owned.merge(collect(st, host, false)) {
		fail(saveState(st))
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
	// Leftovers: container processes in the stack's kubepods cgroups, and its shims (they outlive
	// containerd): the shim binary it ran, serving its containerd's socket.
	for _, pid := range procsInCgroups(st.Owned.Cgroups) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			fail(fmt.Errorf("kill container process %d: %w", pid, err))
		}
	}
	if shim, err := filepath.EvalSymlinks(st.Shim); err == nil {
		for _, sh := range procsByExe("containerd-shim", shim, p.ContainerdSocket) {
			fail(stopProc(sh, 5*time.Second))
		}
	}
	// Everything is stopped: what the kubelet, the pods' hooks and the plugin created in the
	// stack's host folders since the last record is the stack's as well.
	if live && st.Owned.merge(collect(st, host, true)) {
		fail(saveState(st))
	}

	fail(unmountOwned(st))
	for _, n := range st.Owned.Netns {
		if below(n, st.Work) || slices.Contains(st.Before.NetnsCNI, n) || slices.Contains(st.Before.Mounts, n) {
			continue // goes with the work folder; or was there before, so not the stack's
		}
		if err := os.Remove(n); err != nil && !os.IsNotExist(err) {
			fail(fmt.Errorf("remove netns pin %s: %w", n, err))
		}
	}
	fail(removeCgroups(st.Owned.Cgroups))
	fail(restoreSysctls(st.Before.Sysctls, st.Owned.Sysctls))
	fail(deleteLinks(st))
	fail(removeOwnedHostPaths(st, host))
	fail(removeWork(st.Work, p.Logs, keepLogs || len(errs) > 0, len(errs) > 0))

	after, err := TakeSnapshot()
	if err != nil {
		fail(fmt.Errorf("snapshot host after teardown: %w", err))
	} else if diff := Diff(st.Before, after, st.Work, st.Owned); len(diff) > 0 {
		fail(fmt.Errorf("host differs from before the run (the teardown removes only what the stack recorded as its own; the rest is left as it is):\n  %s",
			strings.Join(diff, "\n  ")))
	}
	if len(errs) == 0 {
		logf("teardown: host restored and verified")
	}
	return errors.Join(errs...)
}

// removeAllPods stops and removes every pod sandbox through the runtime. A stop the kubelet began
// just before it was stopped can still be running in containerd and race this one (the CNI DEL of
// both deletes the pod's eth0: "no such device" for the loser), so a failure is retried.
func removeAllPods(p Paths, st State) error {
	crictl := st.Crictl
	if crictl == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var err error
	var out []byte
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		out, err = exec.CommandContext(ctx, crictl, "--config", p.CrictlConfig, "rmp", "--all", "--force").CombinedOutput()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("remove pods (crictl rmp --all --force, 3 tries): %w: %s", err, out)
}

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

// unmountOwned unmounts what the stack mounted, deepest first: every mount below its work folder that
// was not there before, its sandboxes' netns pins wherever they are, and mounts on the host paths it
// owns (a cluster kubelet's volumes below /var/lib/kubelet).
func unmountOwned(st State) error {
	now, err := MountPoints()
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, n := range append(append([]string{}, st.Owned.Netns...), st.Owned.Paths...) {
		ours[n] = true
	}
	var mounted []string
	for _, m := range added(st.Before.Mounts, now) {
		if below(m, st.Work) || ours[m] {
			mounted = append(mounted, m)
		}
	}
	sort.SliceStable(mounted, func(i, j int) bool { return len(mounted[i]) > len(mounted[j]) })
	var errs []error
	for _, m := range mounted {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// restoreSysctls writes a sysctl back to its value from before the run only when it still holds the
// value the stack's kubelet set (set): changed during the run, and changed by nobody since.
func restoreSysctls(before, set map[string]string) error {
	var errs []error
	for name, want := range set {
		orig, ok := before[name]
		if !ok {
			continue
		}
		file := sysctlPath(name)
		cur, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("read sysctl %s: %w", name, err))
			continue
		}
		if strings.TrimSpace(string(cur)) != want {
			continue // someone else changed it since: theirs now
		}
		if err := os.WriteFile(file, []byte(orig), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, orig, err))
		}
	}
	return errors.Join(errs...)
}

// deleteLinks deletes the host links the stack owns that were not there when it started: veths
// enslaved to its bridge now (a CNI DEL that failed leaves them), the tests' links, then the bridge.
func deleteLinks(st State) error {
	before := map[string]bool{}
	for _, l := range st.Before.Links {
		before[l] = true
	}
	var errs []error
	del := func(name string) {
		if before[name] {
			return
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return // gone
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
		}
	}
	for _, v := range enslavedVeths(st.Owned.Bridge) {
		del(v)
	}
	for _, l := range st.Owned.Links {
		del(l)
	}
	if st.Owned.Bridge != "" {
		del(st.Owned.Bridge)
	}
	return errors.Join(errs...)
}

// removeOwnedHostPaths removes the stack's files in the host's shared folders (ownedHostFiles), then
// the folders it recorded as created during the run, deepest first, each only when empty: an entry
// someone else put there keeps its folder (and the verification reports it).
func removeOwnedHostPaths(st State, l hostLayout) error {
	var errs []error
	for _, f := range ownedHostFiles(st, l) {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
		}
	}
	dirs := append([]string{}, st.Owned.Paths...)
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || st.Before.existedBefore(l.Roots, d) {
			continue
		}
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("remove folder %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes dir and everything below it, refusing when something below it is mounted.
func removeTree(dir string) error {
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil
	}
	mounts, err := MountPoints()
	if err != nil {
		return err
	}
	if m := mountBelow(mounts, dir); m != "" {
		return fmt.Errorf("not removing %s: %s is still mounted", dir, m)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func mountBelow(mounts []string, dir string) string {
	for _, m := range mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			return m
		}
	}
	return ""
}

// removeWork removes the work folder; keepLogs keeps its logs folder, keepState its state file (for
// a later teardown to try again).
func removeWork(work, logs string, keepLogs, keepState bool) error {
	if work == "" {
		return nil
	}
	if !keepLogs && !keepState {
		return removeTree(work)
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
		if (keepLogs && p == logs) || (keepState && e.Name() == StateFile) {
			continue
		}
		errs = append(errs, removeTree(p))
	}
	return errors.Join(errs...)
}
