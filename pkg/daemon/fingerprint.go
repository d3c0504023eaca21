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
	h := hasher{h: sha256.New()}
	h.value(reflect.ValueOf(p).Elem())
	h.flush()
	var out specPrint
	h.h.Sum(out[:0])
	return out
}

// specFingerprint is the fingerprint of the spec writeSpec would write for p: its resource and the
// devices valid says (n of them) in spec view, without making that pool.
func specFingerprint(p *pool.Pool, valid []bool, n int) specPrint {
	h := hasher{h: sha256.New()}
	// As fingerprint(&pool.Pool{Resource, Devices}) walks it: the struct, its two fields.
	h.num('{', 2)
	h.value(reflect.ValueOf(&p.Resource).Elem())
	h.num('l', uint64(n))
	for i := range p.Devices {
		if valid[i] {
			d := specView(p.Devices[i])
			h.value(reflect.ValueOf(&d).Elem())
		}
	}
	h.flush()
	var out specPrint
	h.h.Sum(out[:0])
	return out
}

// hasher feeds values to a hash through a buffer, so that writing a field allocates nothing.
type hasher struct {
	h   hash.Hash
	buf [512]byte
	n   int
}

func (h *hasher) flush() {
	h.h.Write(h.buf[:h.n])
	h.n = 0
}

func (h *hasher) bytes(s string) {
	for len(s) > 0 {
		if h.n == len(h.buf) {
			h.flush()
		}
		c := copy(h.buf[h.n:], s)
		h.n += c
		s = s[c:]
	}
}

func (h *hasher) num(kind byte, x uint64) {
	if h.n+9 > len(h.buf) {
		h.flush()
	}
	h.buf[h.n] = kind
	binary.LittleEndian.PutUint64(h.buf[h.n+1:], x)
	h.n += 9
}

// value writes v unambiguously: each value with its length or a kind marker, maps in key order.
func (h *hasher) value(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		h.num('s', uint64(v.Len()))
		h.bytes(v.String())
	case reflect.Bool:
		x := uint64(0)
		if v.Bool() {
			x = 1
		}
		h.num('b', x)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		h.num('i', uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		h.num('u', v.Uint())
	case reflect.Float32, reflect.Float64:
		h.num('f', math.Float64bits(v.Float()))
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			h.num('N', 0) // nil and empty differ for DeepEqual: here too
			return
		}
		h.num('l', uint64(v.Len()))
		for i := range v.Len() {
			h.value(v.Index(i))
		}
	case reflect.Struct:
		h.num('{', uint64(v.NumField()))
		for i := range v.NumField() {
			h.value(v.Field(i))
		}
	case reflect.Map:
		if v.IsNil() {
			h.num('N', 0)
			return
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, compareKeys)
		h.num('m', uint64(len(keys)))
		for _, k := range keys {
			h.value(k)
			h.value(v.MapIndex(k))
		}
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			h.num('N', 0)
			return
		}
		h.num('p', 0)
		h.value(v.Elem())
	case reflect.Invalid:
		h.num('0', 0)
	default: // chan, func, complex, unsafe pointer: not in a spec's facts
		s := fmt.Sprintf("%v", v)
		h.num('?', uint64(len(s)))
		h.bytes(s)
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
