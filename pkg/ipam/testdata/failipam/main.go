// Command failipam is an IPAM plugin for tests that fails ADD with a CNI error, as the protocol has a
// plugin answer, and records every call (command, container ID, interface, CNI_ARGS) in
// $FAILIPAM_LOG.
package main

import (
	"fmt"
	"os"
)

func main() {
	if log := os.Getenv("FAILIPAM_LOG"); log != "" {
		f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%s %s %s %s\n", os.Getenv("CNI_COMMAND"), os.Getenv("CNI_CONTAINERID"), os.Getenv("CNI_IFNAME"), os.Getenv("CNI_ARGS"))
			f.Close()
		}
	}
	switch os.Getenv("CNI_COMMAND") {
	case "ADD":
		fmt.Println(`{"cniVersion":"1.0.0","code":11,"msg":"no addresses left in range 10.9.0.0/30"}`)
		os.Exit(1)
	case "VERSION":
		fmt.Println(`{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}`)
	}
}
