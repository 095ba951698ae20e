package stackadmin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTokenIsReadTrimmedFromTheFileTheEnvironmentNames(t *testing.T) {
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte("  0123abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(TokenFileEnv, p)
	if got := Token(t); got != "0123abcd" {
		t.Fatalf("Token = %q, want the file's token without its whitespace", got)
	}
}
