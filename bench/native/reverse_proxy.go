// A reverse proxy on Go's standard library (net/http/httputil), the stack KServe's agent and
// its payload logger are built on, with no logging: what that design costs per call before
// any event is made. Built and run by bench/logger_floor.py.
//
//	reverse_proxy UPSTREAM_URL LISTEN_ADDRESS
package main

import (
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: reverse_proxy UPSTREAM_URL LISTEN_ADDRESS")
	}
	upstream, err := url.Parse(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(os.Args[2], httputil.NewSingleHostReverseProxy(upstream)))
}
