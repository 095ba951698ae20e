package pgtest

import "testing"

func TestWithSearchPathAddsTheSchemaAsAQueryParameter(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://u@h:5433/db?sslmode=disable", "postgres://u@h:5433/db?sslmode=disable&search_path=fwtest_x_1"},
		{"postgres://u@h:5433/db", "postgres://u@h:5433/db?search_path=fwtest_x_1"},
	} {
		if got := WithSearchPath(tc.dsn, "fwtest_x_1"); got != tc.want {
			t.Errorf("WithSearchPath(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

func TestDSNIsTheEnvironmentsOrTheStacks(t *testing.T) {
	t.Setenv(Env, "")
	if DSN() != DefaultDSN {
		t.Errorf("unset: %q, want the stack's", DSN())
	}
	t.Setenv(Env, "postgres://elsewhere/db")
	if DSN() != "postgres://elsewhere/db" {
		t.Errorf("set: %q", DSN())
	}
}
