// Command agnhost is a tiny stand-in for registry.k8s.io/e2e-test-images/agnhost, so that the seed
// demo's pod spec (args: ["netexec", "--http-port=80"]) runs from a local image without a registry.
// Only `netexec` is implemented, with the endpoints the end-to-end tests use.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "netexec" {
		fmt.Fprintln(os.Stderr, "usage: agnhost netexec [--http-port=N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("netexec", flag.ExitOnError)
	port := fs.Int("http-port", 8080, "HTTP port to serve on")
	_ = fs.Parse(os.Args[2:])

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "NOW: ok") })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) {
		name, _ := os.Hostname()
		fmt.Fprint(w, name)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.URL.Query().Get("msg")) })
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })

	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		log.Fatalf("netexec: listen on port %d: %v", *port, err)
	}
	// PID 1 in a container gets no default signal handling: exit on SIGTERM explicitly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; os.Exit(0) }()
	log.Printf("netexec: serving HTTP on %s", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
