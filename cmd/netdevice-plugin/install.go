package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/atomicfile"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
)

// runInstallHook copies the hook binary to the host path the CDI specs name. The container runtime
// may be running the old hook at this very moment, so the new one is written beside it and renamed
// over it: a running hook keeps its inode, a starting one sees a whole file.
func runInstallHook(args []string, stderr io.Writer) int {
	from, to, code := parseInstallFlags(args, stderr)
	if code >= 0 {
		return code
	}
	if err := installFile(from, to, 0o755); err != nil {
		fmt.Fprintf(stderr, "install-hook: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "install-hook: installed %s as %s\n", from, to)
	return 0
}

// parseInstallFlags returns the source and destination, or an exit code >= 0 when parsing ended.
func parseInstallFlags(args []string, stderr io.Writer) (from, to string, code int) {
	fs := flag.NewFlagSet("netdevice-plugin install-hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&from, "from", "/usr/local/bin/netdevice-hook", "hook binary in the image")
	fs.StringVar(&to, "to", cdi.DefaultHookPath, "host path the CDI specs name (absolute)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", "", 0
		}
		return "", "", 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "install-hook: unexpected argument %q\n", fs.Arg(0))
		return "", "", 2
	}
	return from, to, -1
}

// installFile atomically replaces dst with a copy of src.
func installFile(src, dst string, mode os.FileMode) error {
	if !filepath.IsAbs(dst) {
		return fmt.Errorf("destination %q: must be an absolute path", dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open source: %w", err)
	}
	defer in.Close()
	return atomicfile.Write(dst, in, mode)
}
