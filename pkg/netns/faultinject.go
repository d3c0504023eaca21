//go:build netdevice_faultinject

package netns

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma/rdmafake"
)

// Fault injection for tests (build tag netdevice_faultinject): with NETDEVICE_FAULT_KILL_AT=N the
// process sends itself SIGKILL at its Nth step, the way `kill -9` or the OOM killer would end a hook
// there; with NETDEVICE_FAULT_TRACE=FILE it appends "N what" for every step to FILE, so a test can
// learn how many steps a run takes; with NETDEVICE_FAULT_RDMA=FILE, RDMA devices are the recording
// fake's whose state is in FILE (rdmafake.Open) instead of the kernel's, so that the kill tests can
// kill at RDMA steps on kernels without RDMA, and the next process sees where the last one left them.
func init() {
	if path := os.Getenv("NETDEVICE_FAULT_RDMA"); path != "" {
		kernelRDMA = rdmafake.Open(path)
	}
	killAt, _ := strconv.Atoi(os.Getenv("NETDEVICE_FAULT_KILL_AT"))
	var trace *os.File
	if path := os.Getenv("NETDEVICE_FAULT_TRACE"); path != "" {
		var err error
		if trace, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "fault injection:", err)
			os.Exit(2)
		}
	}
	if killAt <= 0 && trace == nil {
		return
	}
	n := 0
	stepHook = func(what string) {
		n++
		if trace != nil {
			fmt.Fprintf(trace, "%d %s\n", n, what)
		}
		if n == killAt {
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
