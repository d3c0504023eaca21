package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
)

// Sandbox is a pod sandbox as `crictl pods -o json` reports it.
type Sandbox struct {
	ID       string `json:"id"`
	State    string `json:"state"` // SANDBOX_READY, SANDBOX_NOTREADY
	Created  string `json:"createdAt"`
	Metadata struct {
		Name      string `json:"name"`
		UID       string `json:"uid"`
		Namespace string `json:"namespace"`
		Attempt   int    `json:"attempt"`
	} `json:"metadata"`
}

// Container is a container as `crictl ps -o json` reports it.
type Container struct {
	ID        string `json:"id"`
	SandboxID string `json:"podSandboxId"`
	State     string `json:"state"` // CONTAINER_RUNNING, CONTAINER_EXITED, ...
	Created   string `json:"createdAt"`
	Metadata  struct {
		Name    string `json:"name"`
		Attempt int    `json:"attempt"`
	} `json:"metadata"`
}

// Crictl runs crictl against the stack's containerd and returns its stdout.
func (s *Stack) Crictl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.Opts.Bins.Crictl, append([]string{"--config", s.Paths.CrictlConfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("crictl %v: %w: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Sandboxes returns the sandboxes of the pod named name (exactly) in namespace "default", newest first.
func (s *Stack) Sandboxes(ctx context.Context, name string) ([]Sandbox, error) {
	out, err := s.Crictl(ctx, "pods", "--namespace", "default", "--name", "^"+regexp.QuoteMeta(name)+"$", "-o", "json")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Items []Sandbox `json:"items"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("decode crictl pods output: %w", err)
	}
	sort.Slice(resp.Items, func(i, j int) bool { return newer(resp.Items[i].Created, resp.Items[j].Created) })
	return resp.Items, nil
}

// Containers returns every container (running or not) of a sandbox named name, newest first.
func (s *Stack) Containers(ctx context.Context, sandboxID, name string) ([]Container, error) {
	out, err := s.Crictl(ctx, "ps", "-a", "--pod", sandboxID, "--name", "^"+regexp.QuoteMeta(name)+"$", "-o", "json")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Containers []Container `json:"containers"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("decode crictl ps output: %w", err)
	}
	sort.Slice(resp.Containers, func(i, j int) bool { return newer(resp.Containers[i].Created, resp.Containers[j].Created) })
	return resp.Containers, nil
}

// RunningContainer returns the running container named container of the ready sandbox of pod.
func (s *Stack) RunningContainer(ctx context.Context, pod, container string) (Container, error) {
	sbs, err := s.Sandboxes(ctx, pod)
	if err != nil {
		return Container{}, err
	}
	for _, sb := range sbs {
		if sb.State != "SANDBOX_READY" {
			continue
		}
		cs, err := s.Containers(ctx, sb.ID, container)
		if err != nil {
			return Container{}, err
		}
		for _, c := range cs {
			if c.State == "CONTAINER_RUNNING" {
				return c, nil
			}
		}
		return Container{}, fmt.Errorf("pod %s: no running container %s (%d containers)", pod, container, len(cs))
	}
	return Container{}, fmt.Errorf("pod %s: no ready sandbox (%d sandboxes)", pod, len(sbs))
}

// Exec runs a command in a container and returns its stdout.
func (s *Stack) Exec(ctx context.Context, containerID string, cmd ...string) (string, error) {
	out, err := s.Crictl(ctx, append([]string{"exec", containerID}, cmd...)...)
	return string(out), err
}

// ContainerPID returns the host PID of a container's first process.
func (s *Stack) ContainerPID(ctx context.Context, containerID string) (int, error) {
	out, err := s.Crictl(ctx, "inspect", "-o", "json", containerID)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return 0, fmt.Errorf("decode crictl inspect output of %s: %w", containerID, err)
	}
	if resp.Info.Pid <= 0 {
		return 0, fmt.Errorf("container %s: crictl inspect reports no pid", containerID)
	}
	return resp.Info.Pid, nil
}

// newer compares crictl's createdAt values (nanoseconds since the epoch, as a decimal string).
func newer(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA != nil || errB != nil {
		return a > b
	}
	return x > y
}
