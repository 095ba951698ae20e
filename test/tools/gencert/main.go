// Command gencert writes the local stack's test CA and Envoy's listener certificate:
//
//	go run ./test/tools/gencert -dir .fhirwall/tls [-serial N] 127.0.0.1 localhost
//
// An existing CA in dir is kept, so clients that trust it keep working across a re-issue (rotation).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

func main() {
	dir := flag.String("dir", "", "directory for ca.pem, ca-key.pem, tls.crt and tls.key")
	serial := flag.Int64("serial", time.Now().UnixNano(), "serial number of the server certificate")
	flag.Parse()
	if *dir == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: gencert -dir DIR [-serial N] HOST...  (e.g. -dir .fhirwall/tls 127.0.0.1 localhost)")
		os.Exit(2)
	}
	if err := tlsfixture.Generate(*dir, *serial, flag.Args()...); err != nil {
		fmt.Fprintln(os.Stderr, "gencert:", err)
		os.Exit(1)
	}
}
