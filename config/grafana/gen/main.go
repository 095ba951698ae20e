// Command gen writes fhirwall's Grafana dashboard JSON to stdout:
//
//	go run ./config/grafana/gen > config/grafana/fhirwall-dashboard.json
package main

import (
	"fmt"
	"os"

	"github.com/fhirwall/fhirwall/config/grafana"
)

func main() {
	b, err := grafana.JSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(b)
}
