//go:build e2e

// Package e2e runs the device plugin against a real kubelet, containerd and runc on this machine
// (root). Run it through test/e2e/run.sh, which builds or reuses the stack's binaries, builds the
// project's, and sets the E2E_* environment this package reads.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

var (
	workRoot  = flag.String("e2e.work", "", "folder for the stacks' private files, one subfolder per test (default: a new folder in /var/tmp/ndp-e2e)")
	teardown  = flag.String("e2e.teardown", "", "tear down the stack recorded in this state file, verify the host, and exit")
	preflight = flag.Bool("e2e.preflight", false, "check that no other kubelet or container runtime runs here (stack.Preflight), and exit")
	clusterPF = flag.Bool("e2e.cluster", false, "with -e2e.preflight: check what a cluster stack needs too (control-plane ports, the host's kubelet root, no installed plugin)")
	keepLogs  = flag.Bool("e2e.keep-logs", false, "keep the logs folder even when the test passes")
	hold      = flag.Duration("e2e.hold", 0, "smoke and demo: keep the pod running this long before deleting it, to look around")
	startWait = flag.Duration("e2e.start-timeout", 3*time.Minute, "how long bringing up containerd and the kubelet may take")
)

// active holds the stacks that are up, so a signal tears them down before the process exits.
var active = struct {
	sync.Mutex
	stacks map[*stack.Stack]bool
}{stacks: map[*stack.Stack]bool{}}

func TestMain(m *testing.M) {
	flag.Parse()
	if *teardown != "" {
		os.Exit(teardownFromFile(*teardown))
	}
	if *preflight {
		if err := stack.Preflight(stack.Options{Cluster: *clusterPF}); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// run.sh's lock is an inherited descriptor: keep holding it here, but do not hand it to the
	// kubelet and containerd, or a killed run would keep the lock as long as they live.
	if err := closeOnExecAll(); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		logf("%v: tearing down before exit", s)
		active.Lock() // held until exit: no test can start or tear down a stack meanwhile
		for st := range active.stacks {
			if err := st.Teardown(true); err != nil {
				logf("teardown: %v", err)
			}
		}
		os.Exit(130)
	}()
	os.Exit(m.Run())
}

// holdForPerson pauses with the pod running when -e2e.hold asks for it.
func holdForPerson(st *stack.Stack, pod string) {
	if *hold <= 0 {
		return
	}
	logf("holding pod %s for %v: crictl --config %s ps; kubelet logs in %s", pod, *hold, st.Paths.CrictlConfig, st.Paths.Logs)
	time.Sleep(*hold)
}

// closeOnExecAll marks every inherited descriptor above stderr close-on-exec.
func closeOnExecAll() error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: %w", err)
	}
	return nil
}

// logf writes a progress line to stderr (not t.Logf: teardown may run after the test returned).
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s e2e: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func teardownFromFile(file string) int {
	st, err := stack.LoadState(file)
	if err != nil {
		logf("%v", err)
		return 1
	}
	logf("tearing down the stack recorded in %s", file)
	if err := stack.TeardownState(st, st.Paths(), true, false, logf); err != nil {
		logf("teardown: %v", err)
		return 1
	}
	return 0
}

// newStack brings up containerd and a standalone kubelet for one test and registers their teardown:
// logs tails on failure, host restored and verified always.
func newStack(t *testing.T, name string) *stack.Stack { return newStackWith(t, name, false) }

// newCluster brings up a cluster (control plane, containerd, the kubelet joined as a node) for one
// test, with newStack's teardown; a failure also prints the cluster's view (pods, events, the
// plugin's logs).
func newCluster(t *testing.T, name string) *stack.Stack { return newStackWith(t, name, true) }

func newStackWith(t *testing.T, name string, cluster bool) *stack.Stack {
	t.Helper()
	bins, err := stack.BinariesFromEnv()
	if err != nil {
		t.Fatalf("stack binaries: %v", err)
	}
	root := *workRoot
	if root == "" {
		if err := os.MkdirAll("/var/tmp/ndp-e2e", 0o755); err != nil {
			t.Fatal(err)
		}
		if root, err = os.MkdirTemp("/var/tmp/ndp-e2e", ""); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(root, name)
	if _, err := os.Stat(work); err == nil {
		t.Fatalf("work folder %s exists: a previous run left it (run test/e2e/run.sh teardown)", work)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *startWait)
	defer cancel()

	st, err := stack.New(stack.Options{Work: work, Bins: bins, Logf: logf, Cluster: cluster})
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	active.Lock()
	active.stacks[st] = true
	active.Unlock()
	t.Cleanup(func() {
		failed := t.Failed()
		if failed && cluster {
			fmt.Printf("\n%s\n", clusterDiagnostics(st))
		}
		if failed {
			fmt.Printf("\n%s\n", st.LogTails(60))
		}
		active.Lock()
		defer active.Unlock()
		delete(active.stacks, st)
		start := time.Now()
		if err := st.Teardown(failed || *keepLogs); err != nil {
			t.Errorf("teardown: %v", err)
		}
		logf("stack %s torn down in %v", name, time.Since(start).Round(time.Millisecond))
		if failed || *keepLogs {
			fmt.Printf("logs kept in %s\n", st.Paths.Logs)
		}
	})
	start := time.Now()
	if err := st.Start(ctx); err != nil {
		t.Fatalf("bring up the stack: %v", err)
	}
	logf("stack %s up in %v (work folder %s)", name, time.Since(start).Round(time.Millisecond), work)
	return st
}
