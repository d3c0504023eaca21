package daemon

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"reflect"
	"slices"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// specPrint stands for a pool's CDI spec as the daemon last wrote it: the SHA-256 of every field
// of the pool (its resource, and each device as the spec sees it), so that the daemon need not
// keep a second copy of every pooled device to know whether the spec must be written again.
type specPrint [sha256.Size]byte

// fingerprint is the pool's specPrint. Every field takes part, whatever its type, so a field
// added to device.Device or config.Resource one day is compared without anyone remembering to.
func fingerprint(p *pool.Pool) specPrint {
	h := sha256.New()
	hashValue(h, reflect.ValueOf(p).Elem())
	var out specPrint
	h.Sum(out[:0])
	return out
}

// hashValue writes v into h unambiguously: each value with its length or a kind marker, maps in
// key order.
func hashValue(h hash.Hash, v reflect.Value) {
	var b [9]byte
	num := func(kind byte, x uint64) {
		b[0] = kind
		binary.LittleEndian.PutUint64(b[1:], x)
		h.Write(b[:])
	}
	switch v.Kind() {
	case reflect.String:
		num('s', uint64(v.Len()))
		h.Write([]byte(v.String()))
	case reflect.Bool:
		x := uint64(0)
		if v.Bool() {
			x = 1
		}
		num('b', x)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		num('i', uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		num('u', v.Uint())
	case reflect.Float32, reflect.Float64:
		num('f', math.Float64bits(v.Float()))
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			num('N', 0) // nil and empty differ for DeepEqual: here too
			return
		}
		num('l', uint64(v.Len()))
		for i := range v.Len() {
			hashValue(h, v.Index(i))
		}
	case reflect.Struct:
		num('{', uint64(v.NumField()))
		for i := range v.NumField() {
			hashValue(h, v.Field(i))
		}
	case reflect.Map:
		if v.IsNil() {
			num('N', 0)
			return
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return compareKeys(a, b) })
		num('m', uint64(len(keys)))
		for _, k := range keys {
			hashValue(h, k)
			hashValue(h, v.MapIndex(k))
		}
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			num('N', 0)
			return
		}
		num('p', 0)
		hashValue(h, v.Elem())
	case reflect.Invalid:
		num('0', 0)
	default: // chan, func, complex, unsafe pointer: not in a spec's facts
		s := fmt.Sprintf("%v", v)
		num('?', uint64(len(s)))
		h.Write([]byte(s))
	}
}

// compareKeys orders map keys: by string form for strings, numerically for numbers.
func compareKeys(a, b reflect.Value) int {
	switch a.Kind() {
	case reflect.String:
		return cmpOrdered(a.String(), b.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cmpOrdered(a.Int(), b.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return cmpOrdered(a.Uint(), b.Uint())
	}
	return cmpOrdered(fmt.Sprintf("%v", a), fmt.Sprintf("%v", b))
}

func cmpOrdered[T int64 | uint64 | string](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
