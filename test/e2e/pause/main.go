// Command pause is the pod sandbox image's only binary: it sleeps until SIGTERM or SIGINT, like
// registry.k8s.io/pause, so the end-to-end stack needs no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
