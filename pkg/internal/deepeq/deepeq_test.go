package deepeq

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

type withMap struct {
	A string
	M map[string]int
	P *int
}

// Equal agrees with reflect.DeepEqual on devices that differ in one random field, or not at all,
// and on a struct with a map and a pointer.
func TestEqualAgreesWithDeepEqual(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "a", "b"}
	randomize := func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.String:
				f.SetString(strs[r.IntN(len(strs))])
			case reflect.Bool:
				f.SetBool(r.IntN(2) == 0)
			case reflect.Int:
				f.SetInt(int64(r.IntN(3) - 1))
			case reflect.Slice:
				switch r.IntN(3) {
				case 0:
					f.Set(reflect.Zero(f.Type()))
				case 1:
					f.Set(reflect.MakeSlice(f.Type(), 0, 0))
				default:
					f.Set(reflect.ValueOf([]string{strs[r.IntN(len(strs))]}))
				}
			}
		}
	}
	for range 5000 {
		var a, b device.Device
		randomize(reflect.ValueOf(&a).Elem())
		if r.IntN(3) == 0 {
			b = a
		} else {
			randomize(reflect.ValueOf(&b).Elem())
		}
		if got, want := Equal(&a, &b), reflect.DeepEqual(a, b); got != want {
			t.Fatalf("Equal = %v, DeepEqual = %v for\n%+v\n%+v", got, want, a, b)
		}
	}
	one, two := 1, 1
	for _, c := range []struct{ a, b withMap }{
		{withMap{A: "x", M: map[string]int{"k": 1}, P: &one}, withMap{A: "x", M: map[string]int{"k": 1}, P: &two}},
		{withMap{M: map[string]int{"k": 1}}, withMap{M: map[string]int{"k": 2}}},
		{withMap{M: nil}, withMap{M: map[string]int{}}},
	} {
		if got, want := Equal(&c.a, &c.b), reflect.DeepEqual(c.a, c.b); got != want {
			t.Errorf("Equal = %v, DeepEqual = %v for %+v, %+v", got, want, c.a, c.b)
		}
	}
	a, b := device.New(), device.New()
	if n := testing.AllocsPerRun(100, func() { Equal(&a, &b) }); n != 0 {
		t.Errorf("Equal of two devices allocates %v times", n)
	}
}
