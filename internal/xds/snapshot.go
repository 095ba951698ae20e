package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// Version is a content hash of the resources: the same config always gives the same version, so Envoy is
// only sent a new snapshot when something really changed, and every replica of fhirwall-xds agrees.
func (r *Resources) Version() (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, group := range r.byType() {
		fmt.Fprintf(h, "%s\n", group.typeURL)
		for _, res := range group.resources {
			b, err := opts.Marshal(res)
			if err != nil {
				return "", fmt.Errorf("hash %s: %w", group.typeURL, err)
			}
			fmt.Fprintf(h, "%d\n", len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

type typedResources struct {
	typeURL   resource.Type
	resources []types.Resource
}

func (r *Resources) byType() []typedResources {
	return []typedResources{
		{resource.ClusterType, r.Clusters},
		{resource.RouteType, r.Routes},
		{resource.ListenerType, r.Listeners},
		{resource.SecretType, r.Secrets},
	}
}

// Snapshot wraps the resources in a snapshot versioned by their content hash and refuses an inconsistent
// one (a listener naming a route configuration that is not there), which Envoy would wait on forever.
func (r *Resources) Snapshot() (*cache.Snapshot, error) {
	version, err := r.Version()
	if err != nil {
		return nil, err
	}
	m := map[resource.Type][]types.Resource{}
	for _, g := range r.byType() {
		m[g.typeURL] = g.resources
	}
	snap, err := cache.NewSnapshot(version, m)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("snapshot %s inconsistent: %w", version, err)
	}
	return snap, nil
}

// NewSnapshot runs the whole pipeline: config → IR → resources → snapshot.
func NewSnapshot(cfg Config) (*cache.Snapshot, error) {
	x, err := Translate(cfg)
	if err != nil {
		return nil, err
	}
	return snapshotOf(x)
}

func snapshotOf(x *ir.Xds) (*cache.Snapshot, error) {
	res, err := Build(x)
	if err != nil {
		return nil, err
	}
	return res.Snapshot()
}
