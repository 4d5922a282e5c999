// Command chartserver serves one directory's files over plain HTTP on a loopback address: the local
// cluster's Helm chart repository (index.yaml and chart archives, written by the tests with
// `helm package` and `helm repo index`). Directory listings are off, as a chart repository has none.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("--listen must be a loopback address, got %q", *listen)
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	files := http.FileServer(http.Dir(root))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	server := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving %s on http://%s", root, *listen)
	if err := server.ListenAndServe(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}
