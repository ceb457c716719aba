// Command etcd is etcd's own server main: go.etcd.io/etcd/server/v3 has no
// installable command package, so the cluster test builds this instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
