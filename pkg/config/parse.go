package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/safefile"
)

// Options tune Parse and Load.
type Options struct {
	// DefaultPrefix is the resource prefix of resources that name none; "" means
	// DefaultResourcePrefix.
	DefaultPrefix string
	// Strict makes the problems sriov-dp tolerates errors: keys no field knows and repeated keys
	// (for CI pipelines that want a config exactly right). By default they are warnings.
	Strict bool
}

// Parse reads a selector config (JSON or YAML) and validates all of it, with the default Options
// but for the prefix (see ParseWith).
func Parse(data []byte, defaultPrefix string) (*Config, error) {
	return ParseWith(data, Options{DefaultPrefix: defaultPrefix})
}

// ParseWith reads a selector config (JSON or YAML) and validates all of it. Keys match their
// fields as sriov-dp's encoding/json matches them: exactly, else in any letter case. Keys that no
// field knows, and repeated keys (the last one counts, as in encoding/json), are warnings in
// Config.Warnings, or errors when o.Strict. On any error it returns (nil, ErrorList) naming every
// problem found, each with its field path, in a fixed order: document order for JSON; for YAML,
// whose keys sigs.k8s.io/yaml sorts, keys in sorted order.
func ParseWith(data []byte, o Options) (*Config, error) {
	if o.DefaultPrefix == "" {
		o.DefaultPrefix = DefaultResourcePrefix
	}
	doc, err := decodeDocument(data)
	if err != nil {
		return nil, ErrorList{{Err: err}}
	}
	w := &walker{defaultPrefix: o.DefaultPrefix, strict: o.Strict}
	if err := checkPrefix(o.DefaultPrefix); err != nil {
		w.fail("", "default resource prefix %q: %w", o.DefaultPrefix, err)
	}
	cfg := w.config(doc)
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	for _, warn := range w.warns {
		cfg.Warnings = append(cfg.Warnings, warn.Error())
	}
	return cfg, nil
}

// Load reads and parses a config file. Its error starts with the file path. Only a regular file of
// at most MaxConfigBytes is read (symlinks are followed: a ConfigMap key is one), and never with a
// blocking open, so a FIFO or a device put in its place fails at once.
func Load(path string, defaultPrefix string) (*Config, error) {
	return LoadWith(path, Options{DefaultPrefix: defaultPrefix})
}

// LoadWith is Load with Options.
func LoadWith(path string, o Options) (*Config, error) {
	data, err := safefile.Read(path, MaxConfigBytes, safefile.Options{})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		} else {
			return nil, err // already names the path
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := ParseWith(data, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, warn := range cfg.Warnings {
		cfg.Warnings[i] = path + ": " + warn
	}
	return cfg, nil
}

// walker validates a decoded document, collecting every problem with its path.
type walker struct {
	defaultPrefix string
	strict        bool
	errs          ErrorList
	warns         []*FieldError
	ignored       []string // unknown keys of the object being walked, for the empty-selector error
}

func (w *walker) fail(path, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{Path: path, Err: fmt.Errorf(format, args...)})
}

// tolerate records what sriov-dp accepts without a word but is most likely a mistake: a warning
// ("<what>, ignored<hint>"), or in strict mode an error ("<what><hint>").
func (w *walker) tolerate(path, what, hint string) {
	if w.strict {
		w.errs = append(w.errs, &FieldError{Path: path, Err: errors.New(what + hint)})
		return
	}
	w.warns = append(w.warns, &FieldError{Path: path, Err: errors.New(what + ", ignored" + hint)})
}

// doubt records a value sriov-dp loads but that cannot do what it seems to ("$VENDOR_ID" matches
// nothing): a warning, or in strict mode an error, with the same words.
func (w *walker) doubt(path, msg string) {
	fe := &FieldError{Path: path, Err: errors.New(msg)}
	if w.strict {
		w.errs = append(w.errs, fe)
		return
	}
	w.warns = append(w.warns, fe)
}

// field is the handler of one object key; v is never null (null means "not set").
type field func(path string, v *node)

// ignore is the handler of a key sriov-dp's types have that means nothing to a config (the
// sriov-network-operator writes "SelectorObj": null into every resource it renders).
func ignore(string, *node) {}

// object walks an object's members in document order, as encoding/json would decode them into
// sriov-dp's types: a key takes the field of exactly its name, else one that differs only in
// letter case; of keys that land on one field, the last counts; null counts as absent. Keys no
// field takes and the earlier of repeated keys are tolerated (see tolerate). It returns false if n
// is not an object.
func (w *walker) object(path string, n *node, fields map[string]field) bool {
	if n.kind != kindObject {
		w.fail(path, "must be an object, got %s", n.kind)
		return false
	}
	names := make([]string, len(n.members))
	last := make(map[string]int, len(n.members))
	w.ignored = w.ignored[:0]
	for i, m := range n.members {
		names[i] = fieldFor(m.key, fields)
		if names[i] != "" {
			last[names[i]] = i
		}
	}
	for i, m := range n.members {
		fp := join(path, m.key)
		name := names[i]
		switch {
		case name == "":
			w.ignored = append(w.ignored, m.key)
			w.tolerate(fp, "unknown field", suggest(m.key, fields))
			continue
		case last[name] != i:
			w.tolerate(fp, "repeated key", fmt.Sprintf(" (the later %s is used, as sriov-dp does)", join(path, n.members[last[name]].key)))
			continue
		}
		if m.val.kind != kindNull {
			fields[name](fp, m.val)
		}
	}
	return true
}

// fieldFor is the field a key lands on, as encoding/json matches keys: the field of that exact
// name, else one equal to it ignoring case; "" when none.
func fieldFor(key string, fields map[string]field) string {
	if _, ok := fields[key]; ok {
		return key
	}
	for _, name := range sortedNames(fields) {
		if strings.EqualFold(name, key) {
			return name
		}
	}
	return ""
}

func sortedNames(fields map[string]field) []string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// join appends an object key to a path, quoting keys that are not plain words.
func join(path, key string) string {
	plain := key != ""
	for _, c := range key {
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// suggest names the known field an unknown key is a slip of ("pfName" -> "pfNames"), or lists the
// known fields. Fields sriov-dp has only for its own use (capitalised, ignored here) are not listed.
func suggest(key string, fields map[string]field) string {
	var listed []string
	best, bestDist := "", 3 // further than 2 edits is no slip
	for _, name := range sortedNames(fields) {
		if isInternal(name) {
			continue
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(key)); d < bestDist {
			best, bestDist = name, d
		}
		listed = append(listed, name)
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known fields: %s)", strings.Join(listed, ", "))
}

// isInternal reports a field of sriov-dp's types that no config sets on purpose.
func isInternal(name string) bool { return name != "" && name[0] >= 'A' && name[0] <= 'Z' }

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// maxValueBytes bounds a string value: no field takes one nearly this long (names are at most 253
// bytes), and refusing it here keeps every message that quotes a value short.
const maxValueBytes = 1024

func (w *walker) str(path string, v *node) (string, bool) {
	if v.kind != kindString {
		w.fail(path, "must be a string, got %s%s", v.kind, quoteHint(clipNode(v)))
		return "", false
	}
	if len(v.text) > maxValueBytes {
		w.fail(path, "a string of %d bytes: longer than any value of this field can be (%q...)", len(v.text), v.text[:32])
		return "", false
	}
	return v.text, true
}

// clipNode shortens a number's text for quoteHint.
func clipNode(v *node) *node {
	if len(v.text) <= 32 {
		return v
	}
	c := *v
	c.text = v.text[:32] + "..."
	return &c
}

func (w *walker) boolean(path string, v *node) (bool, bool) {
	if v.kind != kindBool {
		w.fail(path, "must be true or false, got %s", v.kind)
		return false, false
	}
	return v.boolean, true
}

// strings calls each for every element of a list of strings.
func (w *walker) strings(path string, v *node, each func(path, s string)) {
	if v.kind != kindArray {
		w.fail(path, "must be a list of strings, got %s", v.kind)
		return
	}
	for i, e := range v.elems {
		ep := index(path, i)
		if s, ok := w.str(ep, e); ok {
			each(ep, s)
		}
	}
}

// quoteHint helps with YAML, where an unquoted 1572 is a number and an unquoted yes is a boolean.
func quoteHint(v *node) string {
	switch v.kind {
	case kindNumber:
		return fmt.Sprintf(" %s (quote it: \"%s\")", v.text, v.text)
	case kindBool:
		return fmt.Sprintf(" %t (quote it if a string was meant)", v.boolean)
	}
	return ""
}

func (w *walker) config(doc *node) *Config {
	cfg := &Config{}
	if doc.kind != kindObject {
		w.fail("", "the config must be an object with a resourceList, got %s", doc.kind)
		return cfg
	}
	if !doc.has("resourceList") && (doc.has("apiVersion") || doc.has("kind")) {
		w.fail("", "this is a Kubernetes manifest, not a selector config: give the content of the ConfigMap's config.json key")
		return cfg
	}
	var seenList bool
	w.object("", doc, map[string]field{
		"resourceList": func(path string, v *node) {
			seenList = true
			if v.kind != kindArray {
				w.fail(path, "must be a list of resources, got %s", v.kind)
				return
			}
			if len(v.elems) == 0 {
				w.fail(path, "empty: the config must define at least one resource")
				return
			}
			byName := map[string]int{}
			type owner struct {
				index    int
				fullName string
			}
			bySpecFile := map[string]owner{}
			for i, e := range v.elems {
				rp := index(path, i)
				r, ok := w.resource(rp, e)
				if !ok {
					continue
				}
				if first, dup := byName[r.FullName()]; dup {
					w.fail(join(rp, "resourceName"), "resource %q is already defined by %s", r.FullName(), index(path, first))
					continue
				}
				// The pool's CDI spec is <prefix>-<name>.json: x.com/a-b and x.com-a/b would share it.
				specFile := r.Prefix + "-" + r.CDIClass() + ".json"
				if first, dup := bySpecFile[specFile]; dup {
					w.fail(join(rp, "resourceName"), "resource %q would share its CDI spec file %s with %q of %s",
						r.FullName(), specFile, first.fullName, index(path, first.index))
					continue
				}
				byName[r.FullName()] = i
				bySpecFile[specFile] = owner{i, r.FullName()}
				cfg.Resources = append(cfg.Resources, r)
			}
		},
	})
	if !seenList {
		w.fail("", "resourceList is required")
	}
	return cfg
}

func (n *node) has(key string) bool {
	for _, m := range n.members {
		if m.key == key {
			return true
		}
	}
	return false
}

// resource parses one resourceList entry. ok is false when it has problems (already recorded).
func (w *walker) resource(path string, n *node) (r Resource, ok bool) {
	before := len(w.errs)
	var hasName, hasSelectors bool // set when present and not null
	var carrySet *bool
	r.DeviceType = DeviceTypeNetDevice
	if !w.object(path, n, map[string]field{
		"resourceName": func(fp string, v *node) {
			hasName = true
			if s, ok := w.str(fp, v); ok {
				r.Name = s
				if err := checkName(s); err != nil {
					w.fail(fp, "%w", err)
				}
			}
		},
		"resourcePrefix": func(fp string, v *node) {
			if s, ok := w.str(fp, v); ok {
				r.Prefix = s
				if err := checkPrefix(s); err != nil {
					w.fail(fp, "%w", err)
				}
			}
		},
		"deviceType": func(fp string, v *node) {
			s, ok := w.str(fp, v)
			switch {
			case !ok || s == "" || s == DeviceTypeNetDevice:
			case s == "accelerator" || s == "auxNetDevice":
				w.fail(fp, "deviceType %q is not supported: this plugin serves only %q", s, DeviceTypeNetDevice)
			default:
				w.fail(fp, "unknown deviceType %q: want %q", s, DeviceTypeNetDevice)
			}
		},
		"excludeTopology": func(fp string, v *node) { r.ExcludeTopology, _ = w.boolean(fp, v) },
		"podIfName": func(fp string, v *node) {
			if s, ok := w.str(fp, v); ok {
				r.PodIfName = s
				if err := ValidateIfName(s); err != nil {
					w.fail(fp, "%w", err)
				}
			}
		},
		"mtu":                func(fp string, v *node) { r.Interface.MTU = w.mtu(fp, v) },
		"ipam":               func(fp string, v *node) { r.Interface.IPAM = w.ipam(fp, v) },
		"routes":             func(fp string, v *node) { r.Interface.Routes = w.routes(fp, v) },
		"sysctls":            func(fp string, v *node) { r.Interface.Sysctls = w.sysctls(fp, v) },
		"carryHostAddresses": func(fp string, v *node) { carry, _ := w.boolean(fp, v); carrySet = &carry },
		"additionalInfo":     func(fp string, v *node) { r.AdditionalInfo = w.additionalInfo(fp, v) },
		"cniManaged":         func(fp string, v *node) { r.CNIManaged, _ = w.boolean(fp, v) },
		"allowUpperDevices":  func(fp string, v *node) { r.AllowUpperDevices, _ = w.boolean(fp, v) },
		// sriov-dp's own bookkeeping, which the sriov-network-operator marshals into every
		// resource it renders ("SelectorObj": null).
		"SelectorObj":  ignore,
		"SelectorObjs": ignore,
		"selectors": func(fp string, v *node) {
			hasSelectors = true
			switch v.kind {
			case kindObject:
				if s, ok := w.selector(fp, v); ok {
					r.Selectors = append(r.Selectors, s)
				}
			case kindArray:
				if len(v.elems) == 0 {
					w.fail(fp, "empty list: the resource would match no device")
				}
				for i, e := range v.elems {
					if s, ok := w.selector(index(fp, i), e); ok {
						r.Selectors = append(r.Selectors, s)
					}
				}
			default:
				w.fail(fp, "must be a selector object or a list of them, got %s", v.kind)
			}
		},
	}) {
		return r, false
	}
	if !hasName {
		w.fail(path, "resourceName is required")
	}
	if !hasSelectors {
		w.fail(path, "selectors is required: a resource without selectors would match no device")
	}
	if r.Prefix == "" { // absent or "", as sriov-dp reads it
		r.Prefix = w.defaultPrefix
	}
	// The host's addresses travel with the link unless IPAM gives it its own.
	r.Interface.DropHostAddresses = r.Interface.IPAM != nil
	if carrySet != nil {
		r.Interface.DropHostAddresses = !*carrySet
	}
	return r, len(w.errs) == before
}

// mtu reads an interface MTU: 68 (IPv4's least) to 65535.
func (w *walker) mtu(path string, v *node) int {
	if v.kind != kindNumber {
		w.fail(path, "must be a number, got %s", v.kind)
		return 0
	}
	n, err := strconv.Atoi(v.text)
	if err != nil || n < 68 || n > 65535 {
		w.fail(path, "MTU %s: want a whole number from 68 to 65535", clipNode(v).text)
		return 0
	}
	return n
}

// ipam reads a CNI IPAM plugin's configuration: an object with the plugin's "type", whatever else
// the plugin takes (it is the plugin's to check), kept as canonical JSON.
func (w *walker) ipam(path string, v *node) json.RawMessage {
	if v.kind != kindObject {
		w.fail(path, "must be a CNI IPAM configuration object (\"type\": \"host-local\", ...), got %s", v.kind)
		return nil
	}
	raw, err := json.Marshal(v.value())
	if err != nil {
		w.fail(path, "%w", err)
		return nil
	}
	if _, err := netconf.IPAMType(raw); err != nil {
		w.fail(path, "%w", err)
		return nil
	}
	return raw
}

// routes reads extra routes: a list of {dst, gw}.
func (w *walker) routes(path string, v *node) []netconf.Route {
	if v.kind != kindArray {
		w.fail(path, "must be a list of routes ({\"dst\": \"10.2.0.0/16\", \"gw\": \"10.1.0.1\"}), got %s", v.kind)
		return nil
	}
	var out []netconf.Route
	for i, e := range v.elems {
		ep := index(path, i)
		var r netconf.Route
		if !w.object(ep, e, map[string]field{
			"dst": func(fp string, v *node) { r.Dst, _ = w.str(fp, v) },
			"gw":  func(fp string, v *node) { r.GW, _ = w.str(fp, v) },
		}) {
			continue
		}
		checked, err := netconf.CheckRoute(r)
		if err != nil {
			w.fail(ep, "%w", err)
			continue
		}
		out = append(out, checked)
	}
	return out
}

// sysctls reads per-interface sysctls: "net.ipv4.conf.IFNAME.<name>" -> value.
func (w *walker) sysctls(path string, v *node) map[string]string {
	if v.kind != kindObject {
		w.fail(path, "must be an object of sysctls (\"net.ipv4.conf.IFNAME.arp_ignore\": \"1\"), got %s", v.kind)
		return nil
	}
	out := map[string]string{}
	for _, m := range v.members {
		mp := join(path, m.key)
		val, ok := w.str(mp, m.val)
		if !ok {
			continue
		}
		if err := netconf.CheckSysctl(m.key, val); err != nil {
			w.fail(mp, "%w", err)
			continue
		}
		out[m.key] = val
	}
	return out
}

// additionalInfo reads sriov-dp's additionalInfo: per device ("*" for every device, else a PCI
// address) the keys and string values the pod finds under "extra" in PCIDEVICE_<...>_INFO. An
// address key is kept as written, as sriov-dp compares it; one that can never match is a warning.
func (w *walker) additionalInfo(path string, v *node) map[string]map[string]string {
	if v.kind != kindObject {
		w.fail(path, "must be an object of device (\"*\" or a PCI address) to key-value objects, got %s", v.kind)
		return nil
	}
	out := make(map[string]map[string]string, len(v.members))
	for _, dev := range v.members {
		dp := join(path, dev.key)
		if _, dup := out[dev.key]; dup {
			w.tolerate(dp, "repeated key", " (the later one is used, as sriov-dp does)")
		}
		if dev.key != "*" && !isFullPCIAddress(dev.key) {
			w.doubt(dp, "neither \"*\" nor a full PCI address like \"0000:3b:02.0\": it names no device")
		}
		if dev.val.kind == kindNull {
			out[dev.key] = nil
			continue
		}
		if dev.val.kind != kindObject {
			w.fail(dp, "must be an object of string values, got %s", dev.val.kind)
			continue
		}
		kv := make(map[string]string, len(dev.val.members))
		for _, m := range dev.val.members {
			if s, ok := w.str(join(dp, m.key), m.val); ok {
				kv[m.key] = s
			}
		}
		out[dev.key] = kv
	}
	return out
}

// isFullPCIAddress is the form a device ID has: "0000:3b:02.0", lower case.
func isFullPCIAddress(s string) bool {
	n, err := ParsePCIAddress(s)
	return err == nil && n == s
}

// checkName checks a resourceName: a Kubernetes qualified-name part (the kubelet refuses any other
// extended resource). Names CDI cannot take as a class ("700VF") get another class (CDIClass).
func checkName(name string) error {
	if name == "" {
		return errors.New("resourceName is empty")
	}
	if strings.Contains(name, "/") {
		return fmt.Errorf("resourceName %q contains '/': put the prefix in resourcePrefix", name)
	}
	if msgs := content.IsLabelKey(name); len(msgs) > 0 {
		return fmt.Errorf("resourceName %q is not a valid extended-resource name: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

const requestsPrefix = "requests."

// checkPrefix checks a resource prefix: a DNS subdomain, a CDI vendor, and not one of the
// kubernetes.io domains the kubelet keeps for native resources.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil // reported by the caller with more context
	}
	if msgs := content.IsDNS1123Subdomain(prefix); len(msgs) > 0 {
		return fmt.Errorf("resource prefix %q is not a DNS subdomain: %s", prefix, strings.Join(msgs, "; "))
	}
	if err := parser.ValidateVendorName(prefix); err != nil {
		return fmt.Errorf("resource prefix %q cannot be a CDI vendor: %w", prefix, err)
	}
	if prefix == "kubernetes.io" || strings.HasSuffix(prefix, ".kubernetes.io") {
		return fmt.Errorf("resource prefix %q is reserved for Kubernetes' native resources", prefix)
	}
	// The kubelet also checks "requests.<prefix>/<name>" as a qualified name.
	if max := content.DNS1123SubdomainMaxLength - len(requestsPrefix); len(prefix) > max {
		return fmt.Errorf("resource prefix %q is %d bytes; extended resources allow at most %d", prefix, len(prefix), max)
	}
	return nil
}

// selector parses one selector object. ok is false when it has problems (already recorded).
func (w *walker) selector(path string, n *node) (s Selector, ok bool) {
	before := len(w.errs)
	unsupportedList := func(why string) field {
		return func(fp string, v *node) {
			if v.kind != kindArray {
				w.fail(fp, "must be a list, got %s", v.kind)
			} else if len(v.elems) > 0 {
				w.fail(fp, "not supported: %s", why)
			}
		}
	}
	pfSeen := map[string]string{} // PF name (folded) -> path of its first pfNames entry
	rootSeen := map[string]string{}
	if !w.object(path, n, map[string]field{
		"vendors": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.Vendors = append(s.Vendors, w.loose(ep, x, ParseHexID)) })
		},
		"devices": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.Devices = append(s.Devices, w.loose(ep, x, ParseHexID)) })
		},
		"drivers": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.Drivers = append(s.Drivers, w.loose(ep, x, checkWord("driver"))) })
		},
		"pciAddresses": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) {
				s.PCIAddresses = append(s.PCIAddresses, w.loose(ep, x, ParsePCIAddress))
			})
		},
		"acpiIndexes": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.ACPIIndexes = append(s.ACPIIndexes, w.loose(ep, x, checkDecimal)) })
		},
		"pfNames": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) {
				s.PFNames = append(s.PFNames, w.pfSelector(ep, x, keepIfName, pfSeen))
			})
		},
		"rootDevices": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) {
				s.RootDevices = append(s.RootDevices, w.pfSelector(ep, x, ParsePCIAddress, rootSeen))
			})
		},
		"linkTypes": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.LinkTypes = append(s.LinkTypes, w.linkType(ep, x)) })
		},
		"pKeys": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.PKeys = append(s.PKeys, x) }) // compared as the kernel prints them ("0x7fff")
		},
		"ifNames": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) {
				s.IfNames = w.appendParsed(s.IfNames, ep, x, func(p string) (string, error) { return p, ValidateIfNamePattern(p) })
			})
		},
		"linkKinds": func(fp string, v *node) {
			w.strings(fp, v, func(ep, x string) { s.LinkKinds = w.appendParsed(s.LinkKinds, ep, x, checkWord("link kind")) })
		},
		// sriov-dp fields this plugin cannot honour: accepted while they ask for nothing.
		"isRdma":       func(fp string, v *node) { s.IsRdma, _ = w.boolean(fp, v) },
		"needVhostNet": func(fp string, v *node) { s.NeedVhostNet, _ = w.boolean(fp, v) },
		"vdpaType": func(fp string, v *node) {
			if x, ok := w.str(fp, v); ok && x != "" {
				w.fail(fp, "vdpaType %q is not supported: this plugin hands out netdevs, not vDPA devices", x)
			}
		},
		"ddpProfiles": unsupportedList("this plugin does not read Intel DDP profiles"),
		// auxTypes belongs to deviceType auxNetDevice; sriov-dp's netDevice selectors have no such
		// field and ignore it.
		"auxTypes": func(fp string, v *node) {
			w.tolerate(fp, "auxTypes is a field of auxNetDevice selectors", " (a netDevice selector has none, as in sriov-dp)")
		},
	}) {
		return s, false
	}
	if len(w.errs) > before {
		return s, false
	}
	if s.Empty() {
		hint := ""
		if len(w.ignored) > 0 {
			hint = fmt.Sprintf(" (its keys %s were not recognised)", strings.Join(w.ignored, ", "))
		}
		w.fail(path, "empty selector: it would match every device%s; set at least one of vendors, devices, drivers, "+
			"pciAddresses, acpiIndexes, pfNames, rootDevices, linkTypes, pKeys, isRdma, ifNames, linkKinds", hint)
		return s, false
	}
	if pci := s.PCIOnly(); len(pci) > 0 && len(s.LinkKinds) > 0 {
		w.fail(path, "can never match: linkKinds selects software links, %s only PCI functions", strings.Join(pci, ", "))
		return s, false
	}
	return s, true
}

// loose reads a value of a field sriov-dp compares as written. A value parse accepts is kept in
// its normal form (with a warning when that differs from what was written, because sriov-dp would
// not have matched it); one parse refuses is kept as written, where it matches nothing, as it
// matches nothing in sriov-dp (which loads such configs: a template's "$VENDOR_ID", say), with a
// warning. In strict mode both are errors.
func (w *walker) loose(path, x string, parse func(string) (string, error)) string {
	v, err := parse(x)
	if err != nil {
		w.doubt(path, fmt.Sprintf("%v: it matches nothing, as in sriov-dp", err))
		return x
	}
	if v != x {
		w.doubt(path, fmt.Sprintf("%q is read as %q (sriov-dp compares exactly and would match nothing)", x, v))
	}
	return v
}

// pfSelector reads a pfNames or rootDevices entry. As in sriov-dp, only the first entry of a PF
// counts ("ens1#0-1", "ens1#4" selects VFs 0 and 1), and an entry with a bad VF range keeps its PF
// from selecting anything: both load, with a warning.
func (w *walker) pfSelector(path, x string, checkPF func(string) (string, error), seen map[string]string) PFSelector {
	sel, err := ParsePFSelector(x, checkPF)
	if err != nil {
		w.doubt(path, fmt.Sprintf("%v: it selects no VF of its PF, as in sriov-dp", err))
		pf, _, _ := strings.Cut(x, "#")
		sel = PFSelector{PF: pf, Invalid: true, Raw: x}
		if n, err := checkPF(pf); err == nil {
			sel.PF = n
		}
	}
	key := strings.ToLower(sel.PF)
	if first, dup := seen[key]; dup {
		w.doubt(path, fmt.Sprintf("PF %s is named again: only its first entry (%s) counts, as in sriov-dp; merge the VF ranges there", sel.PF, first))
	} else {
		seen[key] = path
	}
	return sel
}

// knownLinkTypes are the link types sriov-dp's linkTypes meet on network functions (netlink's
// names of ARPHRD types).
var knownLinkTypes = []string{"ether", "infiniband", "loopback", "none", "ieee802", "void"}

// linkType reads a linkTypes value. sriov-dp compares it exactly with netlink's name ("ether",
// "infiniband"); a value that differs only in case, or is no link type at all ("IB"), loads and
// matches nothing, with a warning.
func (w *walker) linkType(path, x string) string {
	for _, t := range knownLinkTypes {
		if x == t {
			return x
		}
		if strings.EqualFold(x, t) {
			w.doubt(path, fmt.Sprintf("link type %q matches nothing: link types are compared exactly, as in sriov-dp (write %q)", x, t))
			return x
		}
	}
	if _, err := checkWord("link type")(x); err != nil || strings.Trim(x, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		w.doubt(path, fmt.Sprintf("%q is not a link type (\"ether\", \"infiniband\", ...): it matches nothing, as in sriov-dp", x))
	}
	return x
}

func checkDecimal(x string) (string, error) {
	if x == "" || strings.Trim(x, "0123456789") != "" {
		return "", fmt.Errorf("%q is not an ACPI index: want a decimal number", x)
	}
	return x, nil
}

// appendParsed appends parse(x) to list, or records the parse error at path.
func (w *walker) appendParsed(list []string, path, x string, parse func(string) (string, error)) []string {
	v, err := parse(x)
	if err != nil {
		w.fail(path, "%w", err)
		return list
	}
	return append(list, v)
}

func keepIfName(name string) (string, error) { return name, ValidateIfName(name) }

// checkWord accepts a non-empty value without spaces or '/': driver names, link types, link kinds.
func checkWord(what string) func(string) (string, error) {
	return func(x string) (string, error) {
		if x == "" {
			return "", fmt.Errorf("empty %s", what)
		}
		if strings.ContainsAny(x, " \t\n\v\f\r/") {
			return "", fmt.Errorf("%s %q contains a space or '/'", what, x)
		}
		return x, nil
	}
}
