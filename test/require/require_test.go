package require

import (
	"runtime"
	"testing"
)

func TestMissingFailsOnlyUnderRequireAll(t *testing.T) {
	for _, c := range []struct {
		env        string
		wantFailed bool
	}{{"", false}, {"0", false}, {"1", true}} {
		t.Run("env="+c.env, func(t *testing.T) {
			t.Setenv(Env, c.env)
			ft := &fakeT{}
			done := make(chan struct{})
			go func() { defer close(done); Missing(ft, "build the thing") }() // Fatal and Skip end the goroutine
			<-done
			if ft.failed != c.wantFailed || ft.skipped == c.wantFailed {
				t.Errorf("failed=%v skipped=%v, want failed=%v", ft.failed, ft.skipped, c.wantFailed)
			}
		})
	}
}

// fakeT records what Missing asked for; Fatal and Skip end the calling goroutine like testing.T's do.
type fakeT struct {
	testing.TB
	failed, skipped bool
}

func (*fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}
func (f *fakeT) Skip(...any) {
	f.skipped = true
	runtime.Goexit()
}
