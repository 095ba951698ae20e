// Package policies embeds fhirwall's Rego bundle so the binaries carry a default policy set.
package policies

import "embed"

// FS holds the .rego files of this directory (tests included; the engine skips *_test.rego).
//
//go:embed *.rego
var FS embed.FS
