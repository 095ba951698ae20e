package cors

import "testing"

func TestDiscoveryIsOpenToEveryOriginAndDataOnlyToTheListedOnes(t *testing.T) {
	apps := []string{"https://app.example"}
	for _, tc := range []struct {
		path, origin string
		want         bool
	}{
		{"/metadata", "https://anyone.example", true},
		{"/.well-known/smart-configuration", "https://anyone.example", true},
		{"/Patient/member-01", "https://app.example", true},
		{"/Patient/member-01", "https://app.example.evil", false},
		{"/Patient/member-01", "https://anyone.example", false},
		{"/metadata/x", "https://anyone.example", false},
		// An opaque origin (sandboxed frame, file:) is every such page at once.
		{"/metadata", "null", false},
		{"/Patient/member-01", "", false},
	} {
		if got := ForPath(apps, tc.path).Allows(tc.origin); got != tc.want {
			t.Errorf("%s from %q: %v, want %v", tc.path, tc.origin, got, tc.want)
		}
	}
}
