package config

import (
	"fmt"

	"github.com/spf13/viper"
)

// DecisionCache bounds fhirwall-proxy's cache of policy decisions (decision.CachedPolicy): a repeated request
// shape (the same client, user, scopes, API, request and facts) is answered without evaluating the Rego again.
// Entries 0 turns it off.
type DecisionCache struct {
	Entries  int `mapstructure:"entries"`   // decisions kept; 0: off
	MaxBytes int `mapstructure:"max_bytes"` // memory bound of the cache (1 MiB to 8 GiB with entries on)
}

// Limits of the cache's size: past them it is memory, not speed, that a typo buys.
const (
	MaxDecisionCacheEntries = 10_000_000
	MinDecisionCacheBytes   = 1 << 20
	MaxDecisionCacheBytes   = 8 << 30
)

func decisionCacheDefaults(v *viper.Viper) {
	v.SetDefault("policies.decision_cache.entries", 10000)
	v.SetDefault("policies.decision_cache.max_bytes", 32<<20)
}

func (d DecisionCache) validate() []error {
	var errs []error
	if d.Entries < 0 || d.Entries > MaxDecisionCacheEntries {
		errs = append(errs, fmt.Errorf("policies.decision_cache.entries %d: want 0 (off) to %d", d.Entries, MaxDecisionCacheEntries))
	}
	if d.Entries > 0 && (d.MaxBytes < MinDecisionCacheBytes || d.MaxBytes > MaxDecisionCacheBytes) {
		errs = append(errs, fmt.Errorf("policies.decision_cache.max_bytes %d: want %d to %d with entries on", d.MaxBytes, MinDecisionCacheBytes, MaxDecisionCacheBytes))
	}
	return errs
}
