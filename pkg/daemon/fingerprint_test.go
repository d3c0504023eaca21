package daemon

import (
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// setSome gives every settable field of v a non-zero value different from its current one.
func setSome(t *testing.T, f reflect.Value) bool {
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Bool:
		f.SetBool(!f.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		f.SetInt(f.Int() + 7)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return false
		}
		f.Set(reflect.Append(f, reflect.ValueOf("y").Convert(f.Type().Elem())))
	default:
		return false
	}
	return true
}

// Every field of every device changes the fingerprint, as it changes what reflect.DeepEqual says;
// equal pools have equal prints, whatever the order of a map's keys.
func TestFingerprint(t *testing.T) {
	base := func() pool.Pool {
		d := device.New()
		d.ID, d.PCIAddress, d.IfNames = "0000:3b:01.0", "0000:3b:01.0", []string{"ens1f0v0"}
		return pool.Pool{Resource: config.Resource{Prefix: "example.com", Name: "vfs",
			AdditionalInfo: map[string]map[string]string{"*": {"a": "1", "b": "2"}, "0000:3b:01.0": {"c": "3"}}},
			Devices: []device.Device{d}}
	}
	p := base()
	want := fingerprint(&p)
	q := base()
	if fingerprint(&q) != want {
		t.Fatal("equal pools, different prints")
	}
	typ := reflect.TypeOf(device.Device{})
	for i := range typ.NumField() {
		q := base()
		f := reflect.ValueOf(&q.Devices[0]).Elem().Field(i)
		if !setSome(t, f) {
			t.Errorf("field %s of type %s not covered by this test", typ.Field(i).Name, f.Type())
			continue
		}
		if fingerprint(&q) == want {
			t.Errorf("changing %s leaves the print as it was", typ.Field(i).Name)
		}
	}
	// nil and empty differ (DeepEqual tells them apart), and so do a device more or less.
	q = base()
	q.Devices[0].IfNames = []string{}
	r := base()
	r.Devices[0].IfNames = nil
	if fingerprint(&q) == fingerprint(&r) {
		t.Error("nil and empty IfNames print the same")
	}
	q = base()
	q.Devices = append(q.Devices, q.Devices[0])
	if fingerprint(&q) == want {
		t.Error("a second device leaves the print as it was")
	}
	// The print of a pool as writeSpec takes it equals the print of the spec it would write.
	q = base()
	q.Devices = append(q.Devices, q.Devices[0], q.Devices[0])
	q.Devices[1].ID, q.Devices[1].Carrier = "0000:3b:01.1", device.CarrierUp
	q.Devices[2].ID = "9-not-a-cdi-name!"
	spec := pool.Pool{Resource: q.Resource, Devices: []device.Device{specView(q.Devices[0]), specView(q.Devices[1])}}
	if specFingerprint(&q, []bool{true, true, false}, 2) != fingerprint(&spec) {
		t.Error("specFingerprint differs from the fingerprint of the spec")
	}
	q = base()
	q.Resource.AdditionalInfo["*"]["a"] = "9"
	if fingerprint(&q) == want {
		t.Error("a change of additionalInfo leaves the print as it was")
	}
}
