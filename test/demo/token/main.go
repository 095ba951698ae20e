// Command token logs a seed member in through Keycloak the way a patient app does (authorization code with
// PKCE, driving the real login form) and prints the access token. Demo and manual-testing aid.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/test/smartclient"
)

func main() {
	issuer := flag.String("issuer", "http://127.0.0.1:8180/realms/fhirwall", "token issuer")
	scopes := flag.String("scopes", "openid fhirUser launch/patient patient/*.rs", "scopes to request")
	password := flag.String("password", "fhirwall-demo", "the member's password")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: token [flags] member01|member02|...|member05") }
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := smartclient.AuthorizationCodePKCE(ctx, *issuer, "patient-app", "http://127.0.0.1:8089/callback",
		strings.Fields(*scopes), flag.Arg(0), *password)
	if err != nil {
		fmt.Fprintf(os.Stderr, "token: %v (is Keycloak up? run `make demo`)\n", err)
		os.Exit(1)
	}
	fmt.Println(tok.AccessToken)
}
