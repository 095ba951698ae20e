package decision

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzUnseal: whatever a key holder sealed, Unseal gives a decision or ErrCarryInvalid, never a panic and
// never a refusal or a decision outside its time.
func FuzzUnseal(f *testing.F) {
	c, _ := carryCore(f)
	for _, d := range carryDecisions(f) {
		w, _ := c.Seal(d)
		plain, _ := c.Carry.Open(CarryPurpose, w)
		f.Add(plain)
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		sealed, err := c.Carry.Seal(CarryPurpose, plain)
		if err != nil {
			return
		}
		d, err := c.Unseal(context.Background(), sealed)
		if err != nil {
			if !errors.Is(err, ErrCarryInvalid) && !errors.Is(err, ErrCarryFacts) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if !d.Allow || d.ID == "" || d.Request.Query == nil || d.Request.Params == nil {
			t.Fatalf("opened an unusable decision from %s", plain)
		}
		if age := c.Now().Sub(d.Time); age > MaxCarryAge || age < -maxCarrySkew {
			t.Fatalf("opened a decision %v old", age)
		}
		if _, err := c.Seal(d); err != nil {
			t.Fatalf("an opened decision does not seal again: %v", err)
		}
		_ = json.Valid(plain)
	})
}
