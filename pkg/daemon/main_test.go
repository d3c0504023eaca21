package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"k8s.io/klog/v2"
)

// envInNetns marks the re-executed test binary.
const envInNetns = "NETDEVICE_DAEMON_TEST_NETNS"

// TestMain runs the whole test binary inside a fresh network namespace (`ip netns exec`, which
// also mounts a sysfs of that namespace): the daemon's scanner and link watcher run on many
// goroutines and threads, and must see the test's links only, never the host's.
func TestMain(m *testing.M) {
	klog.InitFlags(nil) // `go test ./pkg/daemon -args -v=4` shows the daemon's log
	if os.Getenv(envInNetns) != "" || os.Geteuid() != 0 {
		os.Exit(m.Run()) // inside already, or no root: link tests skip themselves
	}
	os.Exit(reexecInNetns())
}

func reexecInNetns() int {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ndd-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "daemon tests: ip netns add %s: %v: %s\n", name, err, out)
		return 1
	}
	defer func() { _ = exec.Command("ip", "netns", "del", name).Run() }()
	// The loopback is the only link of a new namespace; bring it up like a host's.
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "daemon tests: lo up in %s: %v: %s\n", name, err, out)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", name, os.Args[0]}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInNetns+"="+name)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "daemon tests: run in namespace %s: %v\n", name, err)
		return 1
	}
}

// requireNetns skips tests that create links unless they run in the private namespace.
func requireNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(envInNetns) == "" {
		t.Skip("needs root: runs in a private network namespace")
	}
}
