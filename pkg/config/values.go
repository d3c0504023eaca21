package config

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/jaypipes/ghw/pkg/pci/address"
)

// MaxVFIndex is the largest VF index a range may name: sriov_totalvfs is a 16-bit PCI field.
const MaxVFIndex = 65535

// ifNameMax is the longest Linux interface name in bytes (IFNAMSIZ - 1).
const ifNameMax = 15

// ParseHexID normalises a PCI vendor or device ID: "8086", "0x8086" and "0X8086" all give "8086".
func ParseHexID(s string) (string, error) {
	h := s
	if len(h) > 2 && (h[:2] == "0x" || h[:2] == "0X") {
		h = h[2:]
	}
	if len(h) != 4 {
		return "", fmt.Errorf("%q is not a PCI ID: want 4 hex digits, like \"8086\" or \"0x8086\"", s)
	}
	v, err := strconv.ParseUint(h, 16, 16)
	if err != nil {
		return "", fmt.Errorf("%q is not a PCI ID: want 4 hex digits, like \"8086\" or \"0x8086\"", s)
	}
	return fmt.Sprintf("%04x", v), nil
}

// ParsePCIAddress normalises a PCI address to the full lower-case sysfs form: "3b:02.0" and
// "0000:3B:02.0" both give "0000:3b:02.0". Domains above ffff (Intel VMD: "10000:e1:00.0") are kept.
func ParsePCIAddress(s string) (string, error) {
	a := address.FromString(s)
	if a == nil || a.Domain == "" {
		return "", fmt.Errorf("%q is not a PCI address: want [domain:]bus:device.function, like \"0000:3b:02.0\"", s)
	}
	dom, err := strconv.ParseUint(a.Domain, 16, 32)
	if err != nil {
		return "", fmt.Errorf("%q is not a PCI address: bad domain %q", s, a.Domain)
	}
	if dev, _ := strconv.ParseUint(a.Device, 16, 8); dev > 0x1f {
		return "", fmt.Errorf("%q is not a PCI address: device %s is above 1f", s, a.Device)
	}
	if fn, _ := strconv.ParseUint(a.Function, 16, 8); fn > 7 {
		return "", fmt.Errorf("%q is not a PCI address: function %s is above 7", s, a.Function)
	}
	return fmt.Sprintf("%04x:%s:%s.%s", dom, a.Bus, a.Device, a.Function), nil
}

// ValidateIfName checks a Linux interface name the way the kernel does (dev_valid_name): 1 to 15
// bytes, not "." or "..", no '/', ':' or whitespace.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > ifNameMax:
		return fmt.Errorf("interface name %q is %d bytes, longer than %d", name, len(name), ifNameMax)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, c := range []byte(name) {
		switch c {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0:
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}

// ValidateIfNamePattern checks a glob (path.Match syntax) on interface names.
func ValidateIfNamePattern(pattern string) error {
	if pattern == "" {
		return errors.New("empty pattern")
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", pattern, err)
	}
	if strings.ContainsRune(pattern, '/') {
		return fmt.Errorf("pattern %q contains '/', which no interface name has", pattern)
	}
	if !strings.ContainsAny(pattern, `*?[\`) && len(pattern) > ifNameMax {
		return fmt.Errorf("pattern %q is longer than %d bytes, so no interface name can match it", pattern, ifNameMax)
	}
	return nil
}

// ParsePFSelector splits "ens1f0#0-3,7" into the PF part and its VF ranges. Without '#' every VF of
// the PF is selected (VFs nil). The PF part is checked by checkPF, which may also normalise it.
func ParsePFSelector(s string, checkPF func(string) (string, error)) (PFSelector, error) {
	pf, ranges, hasRanges := strings.Cut(s, "#")
	if pf == "" && hasRanges {
		return PFSelector{}, fmt.Errorf("%q: no PF before '#'", s)
	}
	pf, err := checkPF(pf)
	if err != nil {
		return PFSelector{}, err
	}
	sel := PFSelector{PF: pf}
	if !hasRanges {
		return sel, nil
	}
	if sel.VFs, err = ParseVFRanges(ranges); err != nil {
		return PFSelector{}, fmt.Errorf("%q: %w", s, err)
	}
	return sel, nil
}

// ParseVFRanges parses the part after '#': comma-separated VF indexes and inclusive ranges, "0-3,7".
func ParseVFRanges(s string) ([]IndexRange, error) {
	if s == "" {
		return nil, errors.New("no VF indexes after '#'")
	}
	var out []IndexRange
	for i, item := range strings.Split(s, ",") {
		first, last, isRange := strings.Cut(item, "-")
		if isRange && first == "" {
			return nil, fmt.Errorf("VF item %d %q: no start (VF indexes are 0 or more)", i, item)
		}
		a, err := parseVFIndex(first)
		if err != nil {
			return nil, fmt.Errorf("VF item %d %q: %w", i, item, err)
		}
		b := a
		if isRange {
			if b, err = parseVFIndex(last); err != nil {
				return nil, fmt.Errorf("VF item %d %q: %w", i, item, err)
			}
			if b < a {
				return nil, fmt.Errorf("VF item %d %q: range ends before it starts", i, item)
			}
		}
		out = append(out, IndexRange{First: a, Last: b})
	}
	return out, nil
}

// parseVFIndex accepts decimal digits only: no sign, no spaces.
func parseVFIndex(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing VF index")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("VF index %q is not a decimal number", s)
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v > MaxVFIndex {
		return 0, fmt.Errorf("VF index %q is above %d", s, MaxVFIndex)
	}
	return v, nil
}

// String gives the selector back in config form: "ens1f0", "ens1f0#0-3,7".
func (p PFSelector) String() string {
	if p.Invalid {
		return p.Raw
	}
	if p.VFs == nil {
		return p.PF
	}
	var b strings.Builder
	b.WriteString(p.PF)
	b.WriteByte('#')
	for i, r := range p.VFs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(r.First))
		if r.Last != r.First {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(r.Last))
		}
	}
	return b.String()
}
