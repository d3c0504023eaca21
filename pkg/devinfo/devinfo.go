// Package devinfo writes the Network Plumbing Working Group device-information files of allocated
// devices (github.com/k8snetworkplumbingwg/device-info-spec): the file Multus copies into a pod's
// network-status annotation. The content is the spec's own type from the
// network-attachment-definition-client library; the files are named as that library and sriov-dp
// name them, so Multus finds them.
//
// Written by hand, not with the library's SaveDeviceInfoForDP: that function has a fixed folder
// (tests could not point it elsewhere), refuses to replace an existing file, and writes in place,
// where a reader could see half a file; here every write is a new file renamed into place.
package devinfo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/atomicfile"
)

// DefaultDir is where device plugins put their files, by the spec.
const DefaultDir = "/var/run/k8s.cni.cncf.io/devinfo/dp"

const suffix = "-device.json"

// Dir is one folder of device-information files.
type Dir struct{ path string }

// New returns the folder at path ("" means DefaultDir).
func New(path string) *Dir {
	if path == "" {
		path = DefaultDir
	}
	return &Dir{path: path}
}

// Path is the folder.
func (d *Dir) Path() string { return d.path }

// File is the file of one device of a resource: "<resource>-<device>-device.json" with '/'
// turned into '-' ("intel.com-sriov_a-0000:3b:02.1-device.json").
func (d *Dir) File(resource, deviceID string) string {
	return filepath.Join(d.path, strings.ReplaceAll(resource, "/", "-")+"-"+strings.ReplaceAll(deviceID, "/", "-")+suffix)
}

// PCI is what the file of a PCI function says: its address and, when it has them, its RDMA
// devices (comma-separated, as sriov-dp writes them).
func PCI(address string, rdmaDevices []string) *nadv1.DeviceInfo {
	return &nadv1.DeviceInfo{
		Type:    nadv1.DeviceInfoTypePCI,
		Version: nadv1.DeviceInfoVersion,
		Pci:     &nadv1.PciDevice{PciAddress: address, RdmaDevice: strings.Join(rdmaDevices, ",")},
	}
}

// Write puts the device's file in place atomically (readers see the old file or the new one), mode
// 0444 as the library writes it.
func (d *Dir) Write(resource, deviceID string, info *nadv1.DeviceInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("device-information file of %s %s: %w", resource, deviceID, err)
	}
	if err := atomicfile.Write(d.File(resource, deviceID), bytes.NewReader(data), 0o444); err != nil {
		return fmt.Errorf("device-information file of %s %s: %w", resource, deviceID, err)
	}
	return nil
}

// Remove deletes the device's file; an absent one is no error.
func (d *Dir) Remove(resource, deviceID string) error {
	if err := os.Remove(d.File(resource, deviceID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the device-information file of %s %s: %w", resource, deviceID, err)
	}
	return nil
}

// Read returns what the device's file says.
func (d *Dir) Read(resource, deviceID string) (*nadv1.DeviceInfo, error) {
	data, err := os.ReadFile(d.File(resource, deviceID))
	if err != nil {
		return nil, err
	}
	var info nadv1.DeviceInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", d.File(resource, deviceID), err)
	}
	return &info, nil
}

// Devices lists the device IDs that have a file for the resource. valid says which names are device
// IDs (file names cannot tell "a.com/x" + "y-0000:3b:02.1" from "a.com/x-y" + "0000:3b:02.1", but
// only one of them is a device ID).
func (d *Dir) Devices(resource string, valid func(id string) bool) ([]string, error) {
	entries, err := os.ReadDir(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list device-information files: %w", err)
	}
	prefix := strings.ReplaceAll(resource, "/", "-") + "-"
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix)
		if id != "" && valid(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
