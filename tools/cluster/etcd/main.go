// Command etcd runs the etcd server (go.etcd.io/etcd/server/v3/etcdmain), as etcd's own main does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
