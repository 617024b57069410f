// etcd built from the go.etcd.io/etcd/server/v3 module; its own main package
// cannot be `go install`ed because the module's go.mod carries replaces.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
