package stack

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcLifecycle(t *testing.T) {
	sleep, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		exe   string
		args  []string
		grace time.Duration
	}{
		{"stops on SIGTERM", sleep, []string{"100"}, 5 * time.Second},
		// an ignored SIGTERM survives exec: the process needs the SIGKILL after the grace period
		{"ignores SIGTERM", "/bin/sh", []string{"-c", `trap "" TERM; exec ` + sleep + ` 100`}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "p.log")
			r, err := startProc("p", tt.exe, tt.args, []string{"E2E_TEST_MARK=1"}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = stopProc(Proc{Name: "p", PID: r.PID, Exe: sleep}, 0) })
			// wait for the shell to exec sleep
			deadline := time.Now().Add(5 * time.Second)
			for !(Proc{PID: r.PID, Exe: sleep}).Alive() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			p := Proc{Name: "p", PID: r.PID, Exe: sleep}
			if !p.Alive() {
				t.Fatalf("pid %d is not running %s", r.PID, sleep)
			}
			if (Proc{PID: r.PID, Exe: "/usr/bin/other"}).Alive() {
				t.Error("Alive is true for a recorded binary the PID does not run (a reused PID)")
			}
			for _, c := range []struct {
				arg  string
				want bool
			}{{"", true}, {"100", true}, {"10", false}, {"-address", false}} {
				found := false
				for _, q := range procsByExe("sleep", sleep, c.arg) {
					found = found || q.PID == r.PID
				}
				if found != c.want {
					t.Errorf("procsByExe(%s, arg %q) has pid %d: %v, want %v", sleep, c.arg, r.PID, found, c.want)
				}
			}
			env, _ := os.ReadFile("/proc/" + strconv.Itoa(r.PID) + "/environ")
			if !strings.Contains(string(env), "E2E_TEST_MARK=1") {
				t.Error("the extra environment did not reach the process")
			}

			start := time.Now()
			if err := stopProc(p, tt.grace); err != nil {
				t.Fatalf("stopProc: %v", err)
			}
			select {
			case <-r.exited:
			case <-time.After(5 * time.Second):
				t.Fatal("process not reaped after stopProc")
			}
			if p.Alive() {
				t.Error("process alive after stopProc")
			}
			if tt.grace < time.Second && time.Since(start) < tt.grace {
				t.Errorf("stopProc returned after %v, before the grace period %v for a process ignoring SIGTERM", time.Since(start), tt.grace)
			}
			if data, _ := os.ReadFile(log); !strings.Contains(string(data), "==== ") {
				t.Errorf("log %s lacks the start line: %q", log, data)
			}
			// stopping again is a no-op
			if err := stopProc(p, tt.grace); err != nil {
				t.Errorf("second stopProc: %v", err)
			}
		})
	}
}

func TestStartProcErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := startProc("ghost", filepath.Join(dir, "missing"), nil, nil, filepath.Join(dir, "l")); err == nil || !strings.Contains(err.Error(), "start ghost") {
		t.Errorf("startProc of a missing binary = %v, want an error naming it", err)
	}
	if err := stopProc(Proc{Name: "none"}, time.Second); err == nil {
		t.Error("stopProc without a PID succeeded")
	}
}

func TestProcsInCgroups(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []struct{ path, data string }{
		{"cgroup.procs", "1\n"},
		{"burstable/pod1/cgroup.procs", "42\n43\n"},
		{"besteffort/cgroup.procs", "43\n"},
	} {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := procsInCgroups([]string{dir})
	want := map[int]bool{1: true, 42: true, 43: true}
	if len(got) != len(want) {
		t.Fatalf("procsInCgroups = %v, want each of 1, 42, 43 once", got)
	}
	for _, pid := range got {
		if !want[pid] {
			t.Errorf("unexpected pid %d", pid)
		}
	}
}

func TestBinariesCheck(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "crictl", "bridge", "host-local", "loopback", "runc", "busybox", "agnhost", "pause"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j := func(f string) string { return filepath.Join(dir, f) }
	ok := Binaries{Kubelet: j("kubelet"), Containerd: j("containerd"), Crictl: j("crictl"), CNIBinDir: dir,
		Runc: j("runc"), Busybox: j("busybox"), Agnhost: j("agnhost"), Pause: j("pause")}
	if err := ok.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	tests := []struct {
		name   string
		change func(b *Binaries)
		want   string
	}{
		{"relative", func(b *Binaries) { b.Kubelet = "kubelet" }, "kubelet (E2E_BIN_KUBELET)"},
		{"missing", func(b *Binaries) { b.Pause = j("nope") }, "pause (E2E_PAUSE)"},
		{"no containerd", func(b *Binaries) { b.Containerd = filepath.Join(t.TempDir(), "containerd") }, "containerd (E2E_BIN_CONTAINERD)"},
		{"unset", func(b *Binaries) { b.Runc = "" }, "runc (E2E_RUNC)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ok
			tt.change(&b)
			if err := b.Check(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// TestBinariesCheckCluster: a cluster needs the control plane's binaries, whereabouts' plugin and
// its module's CRDs and install manifest; a missing one is named with the variable that sets it.
func TestBinariesCheckCluster(t *testing.T) {
	dir := t.TempDir()
	j := func(f string) string { return filepath.Join(dir, f) }
	for _, f := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "whereabouts",
		"wb/" + WhereaboutsIPPoolCRD, "wb/" + WhereaboutsReservationCRD, "wb/" + WhereaboutsInstall} {
		mustWrite(t, j(f), "")
	}
	ok := Binaries{Etcd: j("etcd"), APIServer: j("kube-apiserver"), ControllerManager: j("kube-controller-manager"),
		Scheduler: j("kube-scheduler"), Kubectl: j("kubectl"), Whereabouts: j("whereabouts"), WhereaboutsModule: j("wb")}
	if err := ok.CheckCluster(); err != nil {
		t.Fatalf("CheckCluster: %v", err)
	}
	tests := []struct {
		name   string
		change func(b *Binaries)
		want   string
	}{
		{"no whereabouts", func(b *Binaries) { b.Whereabouts = j("nope/whereabouts") }, "whereabouts (E2E_BIN_WHEREABOUTS)"},
		{"no module", func(b *Binaries) { b.WhereaboutsModule = "" }, WhereaboutsIPPoolCRD + " (E2E_WHEREABOUTS_MODULE)"},
		{"another module", func(b *Binaries) { b.WhereaboutsModule = dir }, WhereaboutsIPPoolCRD + " (E2E_WHEREABOUTS_MODULE)"},
		{"no kubectl", func(b *Binaries) { b.Kubectl = "" }, "kubectl (E2E_BIN_KUBE)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ok
			tt.change(&b)
			if err := b.CheckCluster(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckCluster = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestLoadState(t *testing.T) {
	dir := t.TempDir()
	s := &Stack{Paths: NewPaths(dir), state: State{Work: dir, Before: Snapshot{Sysctls: map[string]string{"kernel.panic": "0"}},
		Owned: Owned{Bridge: "ndpe2e0", IDs: []string{"abc"}, Sysctls: map[string]string{"kernel.panic": "10"}},
		Procs: []Proc{{Name: "kubelet", PID: 7, Exe: "/k"}}}}
	if err := s.saveLocked(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s.state) {
		t.Errorf("LoadState = %+v, want what was saved: %+v", got, s.state)
	}
	for name, data := range map[string]string{"garbage": "{", "empty": "{}", "no snapshot": `{"Work":"/w"}`} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadState(f); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("LoadState(%s) = %v, want an error naming the file", name, err)
		}
	}
}
