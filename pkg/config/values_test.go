package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

func TestParseHexID(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "8086", want: "8086"},
		{in: "0x8086", want: "8086"},
		{in: "0X15B3", want: "15b3"},
		{in: "154C", want: "154c"},
		{in: "0000", want: "0000"},
		{in: "86", err: "not a PCI ID"},
		{in: "0x86", err: "not a PCI ID"},
		{in: "808600", err: "not a PCI ID"},
		{in: "80g6", err: "not a PCI ID"},
		{in: "+808", err: "not a PCI ID"},
		{in: "0x", err: "not a PCI ID"},
		{in: "", err: "not a PCI ID"},
		{in: " 8086", err: "not a PCI ID"},
	}
	for _, tt := range tests {
		got, err := config.ParseHexID(tt.in)
		check(t, "ParseHexID("+tt.in+")", got, err, tt.want, tt.err)
	}
}

func TestParsePCIAddress(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "0000:3b:02.0", want: "0000:3b:02.0"},
		{in: "3b:02.0", want: "0000:3b:02.0"},
		{in: "0000:3B:1F.7", want: "0000:3b:1f.7"},
		{in: "0001:00:00.1", want: "0001:00:00.1"},
		{in: "10000:e1:00.0", want: "10000:e1:00.0"}, // Intel VMD domain
		{in: "0:3b:02.0", want: "0000:3b:02.0"},
		{in: "0000:3b:20.0", err: "device 20 is above 1f"},
		{in: "0000:3b:02.8", err: "function 8 is above 7"},
		{in: ":3b:02.0", err: "not a PCI address"},
		{in: "3b:02", err: "not a PCI address"},
		{in: "0000:3b:02.0#1", err: "not a PCI address"},
		{in: "0000:3b:02.0\n", err: "not a PCI address"},
		{in: "ens1f0", err: "not a PCI address"},
		{in: "", err: "not a PCI address"},
	}
	for _, tt := range tests {
		got, err := config.ParsePCIAddress(tt.in)
		check(t, "ParsePCIAddress("+tt.in+")", got, err, tt.want, tt.err)
	}
}

func TestValidateIfName(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{in: "net1"},
		{in: "eth0"},
		{in: "a"},
		{in: "enp175s0f0np0ab"}, // 15 bytes
		{in: "dummy-0_x.y"},
		{in: "", err: "empty"},
		{in: "enp175s0f0np0abc", err: "16 bytes, longer than 15"},
		{in: ".", err: "not allowed"},
		{in: "..", err: "not allowed"},
		{in: "net 1", err: "contains ' '"},
		{in: "net\t1", err: "contains '\\t'"},
		{in: "eth0:1", err: "contains ':'"},
		{in: "a/b", err: "contains '/'"},
		{in: "a\x00", err: "contains '\\x00'"},
	}
	for _, tt := range tests {
		err := config.ValidateIfName(tt.in)
		check(t, "ValidateIfName("+tt.in+")", "", err, "", tt.err)
	}
}

func TestValidateIfNamePattern(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{in: "dummy*"},
		{in: "veth?"},
		{in: "ifb[0-9]"},
		{in: "eth0"},
		{in: "*"},
		{in: `x\*`},
		{in: "avery*longpatternthatisok"}, // wildcards: length says nothing
		{in: "", err: "empty pattern"},
		{in: "dummy[", err: "syntax error in pattern"},
		{in: `x\`, err: "syntax error in pattern"},
		{in: "a/*", err: "contains '/'"},
		{in: "averyveryverylongname", err: "longer than 15 bytes"},
	}
	for _, tt := range tests {
		err := config.ValidateIfNamePattern(tt.in)
		check(t, "ValidateIfNamePattern("+tt.in+")", "", err, "", tt.err)
	}
}

func TestParseVFRanges(t *testing.T) {
	tests := []struct {
		in   string
		want []config.IndexRange
		err  string
	}{
		{in: "0-3,7", want: []config.IndexRange{vfs(0, 3), vfs(7, 7)}},
		{in: "0", want: []config.IndexRange{vfs(0, 0)}},
		{in: "0,2-7,9", want: []config.IndexRange{vfs(0, 0), vfs(2, 7), vfs(9, 9)}},
		{in: "5-5", want: []config.IndexRange{vfs(5, 5)}},
		{in: "007", want: []config.IndexRange{vfs(7, 7)}},
		{in: "0-65535", want: []config.IndexRange{vfs(0, 65535)}},
		{in: "3-1", err: `VF item 0 "3-1": range ends before it starts`},
		{in: "", err: "no VF indexes after '#'"},
		{in: "a", err: `VF index "a" is not a decimal number`},
		{in: "-1", err: "no start"},
		{in: "1-", err: "missing VF index"},
		{in: "1,,2", err: `VF item 1 "": missing VF index`},
		{in: "1,", err: `VF item 1 "": missing VF index`},
		{in: "1-2-3", err: `VF index "2-3" is not a decimal number`},
		{in: "+1", err: "not a decimal number"},
		{in: " 1", err: "not a decimal number"},
		{in: "65536", err: "above 65535"},
		{in: "99999999999999999999", err: "above 65535"},
	}
	for _, tt := range tests {
		got, err := config.ParseVFRanges(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseVFRanges(%q) error = %v, want one containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseVFRanges(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestPFSelector(t *testing.T) {
	tests := []struct {
		in      string
		str     string
		has     []int
		hasNot  []int
		checkPF func(string) (string, error)
	}{
		{in: "ens1f0", str: "ens1f0", has: []int{0, 1, 127, 65535}},
		{in: "ens1f0#0-3,7", str: "ens1f0#0-3,7", has: []int{0, 1, 3, 7}, hasNot: []int{-1, 4, 6, 8}},
		{in: "ens1f0#2,2-2", str: "ens1f0#2,2", has: []int{2}, hasNot: []int{1, 3}},
		{in: "86:00.0#0-1", str: "0000:86:00.0#0-1", has: []int{0, 1}, hasNot: []int{2}, checkPF: config.ParsePCIAddress},
	}
	for _, tt := range tests {
		check := tt.checkPF
		if check == nil {
			check = func(s string) (string, error) { return s, config.ValidateIfName(s) }
		}
		sel, err := config.ParsePFSelector(tt.in, check)
		if err != nil {
			t.Errorf("ParsePFSelector(%q): %v", tt.in, err)
			continue
		}
		if got := sel.String(); got != tt.str {
			t.Errorf("ParsePFSelector(%q).String() = %q, want %q", tt.in, got, tt.str)
		}
		for _, i := range tt.has {
			if !sel.HasVF(i) {
				t.Errorf("%q.HasVF(%d) = false, want true", tt.in, i)
			}
		}
		for _, i := range tt.hasNot {
			if sel.HasVF(i) {
				t.Errorf("%q.HasVF(%d) = true, want false", tt.in, i)
			}
		}
	}
}

// check compares a (value, error) result with the wanted value or error substring.
func check(t *testing.T, call, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s error = %v, want one containing %q", call, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s = %q, %v; want %q", call, got, err, want)
	}
}

func vfs(first, last int) config.IndexRange { return config.IndexRange{First: first, Last: last} }
