package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the stack started, recorded by PID and binary so that a teardown, even one run
// by another process, stops exactly it and never a process that reused its PID.
type Proc struct {
	Name string
	PID  int
	Exe  string // the binary as /proc/<pid>/exe resolves it
	Args []string
	Log  string
}

// running is a Proc this process started and reaps.
type running struct {
	Proc
	exited chan struct{}
	err    error // wait status, set before exited closes
}

// startProc starts exe with args, stdout and stderr appended to logFile. The process gets its own
// process group so a Ctrl-C on the terminal reaches only the test, whose teardown then stops it in
// order.
func startProc(name, exe string, args []string, env []string, logFile string) (*running, error) {
	resolved, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(log, "\n==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), exe, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, exe, err)
	}
	r := &running{Proc: Proc{Name: name, PID: cmd.Process.Pid, Exe: resolved, Args: args, Log: logFile}, exited: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		log.Close()
		close(r.exited)
	}()
	return r, nil
}

// Alive reports whether the recorded process still runs the recorded binary. A zombie or a PID
// reused by another program is not alive.
func (p Proc) Alive() bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe")
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == p.Exe
}

// stopProc sends SIGTERM, waits up to grace, then SIGKILLs and waits again.
func stopProc(p Proc, grace time.Duration) error {
	if p.PID <= 0 {
		return fmt.Errorf("stop %s: no PID recorded", p.Name)
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, grace}, {syscall.SIGKILL, 10 * time.Second}} {
		if !p.Alive() {
			return nil
		}
		if err := syscall.Kill(p.PID, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s (pid %d): %v: %w", p.Name, p.PID, step.sig, err)
		}
		if waitGone(p, step.wait) {
			return nil
		}
	}
	return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.Name, p.PID)
}

func waitGone(p Proc, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.Alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procsByExe returns every process whose binary is exe and whose arguments include arg ("" for any):
// e.g. the shims of one containerd (they detach from it and so are not its children), which are
// started with -address <its socket>.
func procsByExe(name, exe, arg string) []Proc {
	var out []Proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := Proc{Name: name, PID: pid, Exe: exe}
		if p.Alive() && (arg == "" || hasArg(pid, arg)) {
			out = append(out, p)
		}
	}
	return out
}

// hasArg reports whether one of the process's arguments is exactly arg.
func hasArg(pid int, arg string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, a := range strings.Split(string(data), "\x00") {
		if a == arg {
			return true
		}
	}
	return false
}

// procsInCgroups returns the PIDs of every process in a cgroup folder below any of roots.
func procsInCgroups(roots []string) []int {
	seen := map[int]bool{}
	var out []int
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}
