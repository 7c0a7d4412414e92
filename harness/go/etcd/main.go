// Command etcd is upstream etcd's server entry point, built from the Go module
// proxy. `go install go.etcd.io/etcd/server/v3@…` is refused because etcd's
// go.mod carries replace directives, so this wrapper module is the main module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
