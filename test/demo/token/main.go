// Command token logs a seed member in through Keycloak the way a patient app does (authorization code with
// PKCE, driving the real login form) and prints the access token; with -backend, it gets a SMART Backend
// Services token of a registered backend client (provider-org-a, payer-b, …) instead. Demo and
// manual-testing aid.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

func main() {
	issuer := flag.String("issuer", "http://127.0.0.1:8180/realms/fhirwall", "token issuer")
	scopes := flag.String("scopes", "openid fhirUser launch/patient patient/*.rs", "scopes to request")
	password := flag.String("password", "fhirwall-demo", "the member's password")
	backend := flag.String("backend", "", "a backend client (provider-org-a, provider-org-b, payer-b, payer-c): its client_credentials token, with -scopes (default for providers: prior-auth's)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: token [flags] member01|member02|...|member05\n       token -backend provider-org-a [-scopes ...]")
	}
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if *backend != "" {
		sc := strings.Fields(*scopes)
		if !isFlagSet("scopes") {
			sc = []string{"system/Claim.c", "system/Claim.r", "system/Subscription.crd"}
		}
		tok, err := stackauth.Backend(ctx, *backend, sc...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "token: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(tok.AccessToken)
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	tok, err := smartclient.AuthorizationCodePKCE(ctx, *issuer, "patient-app", "http://127.0.0.1:8089/callback",
		strings.Fields(*scopes), flag.Arg(0), *password)
	if err != nil {
		fmt.Fprintf(os.Stderr, "token: %v (is Keycloak up? run `make demo`)\n", err)
		os.Exit(1)
	}
	fmt.Println(tok.AccessToken)
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
