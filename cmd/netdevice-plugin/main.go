// Command netdevice-plugin is the node daemon: it serves each configured pool of network devices to the
// kubelet as an extended resource. `netdevice-plugin discover` prints what the node has and which pool
// each device lands in, without serving anything; `netdevice-plugin install-hook` puts the hook binary
// where the CDI specs name it (the DaemonSet's init container).
package main

import (
	"fmt"
	"os"
)

// version is set at build time (-ldflags "-X main.version=v0.1.0").
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "version", "--version":
			fmt.Println("netdevice-plugin", version)
			os.Exit(0)
		case "discover":
			os.Exit(runDiscover(os.Args[2:], os.Stdout, os.Stderr))
		case "install-hook":
			os.Exit(runInstallHook(os.Args[2:], os.Stderr))
		}
	}
	os.Exit(runDaemon(os.Args[1:]))
}
