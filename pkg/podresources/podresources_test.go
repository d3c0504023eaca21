package podresources_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

func TestHeld(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "kubelet.sock")
	kubelet, err := kubelettest.StartPodResources(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer kubelet.Close()
	kubelet.Hold("default", "a", "intel.com/sriov", "0000:3b:01.0", "0000:3b:01.1")
	kubelet.Hold("default", "a", "networking.k8s.io/netdevice", "dummy0")
	kubelet.Hold("kube-system", "b", "intel.com/sriov", "0000:3b:01.2")

	c := podresources.New(sock)
	held, err := c.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := podresources.Held{
		"intel.com/sriov": {
			"0000:3b:01.0": {{Namespace: "default", Name: "a"}},
			"0000:3b:01.1": {{Namespace: "default", Name: "a"}},
			"0000:3b:01.2": {{Namespace: "kube-system", Name: "b"}},
		},
		"networking.k8s.io/netdevice": {"dummy0": {{Namespace: "default", Name: "a"}}},
	}
	if !reflect.DeepEqual(held, want) {
		t.Fatalf("Held = %v, want %v", held, want)
	}
	if !held.Holds("intel.com/sriov", "0000:3b:01.2") || held.Holds("intel.com/sriov", "0000:3b:01.3") || held.Holds("other/x", "0000:3b:01.0") {
		t.Error("Holds answers wrong")
	}

	kubelet.Release("default", "a")
	if held, err = c.Held(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held.Holds("networking.k8s.io/netdevice", "dummy0") || !held.Holds("intel.com/sriov", "0000:3b:01.2") {
		t.Errorf("after the pod is gone: %v", held)
	}

	kubelet.Fail(errors.New("kubelet is restarting"))
	if _, err := c.Held(context.Background()); err == nil || !strings.Contains(err.Error(), sock) {
		t.Errorf("a failing kubelet gives %v, want an error naming the socket", err)
	}
}

func TestHeldNoKubelet(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	if _, err := podresources.New(sock).Held(context.Background()); err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("no kubelet gives %v, want an error naming the socket", err)
	}
}
