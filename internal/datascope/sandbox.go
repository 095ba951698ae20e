package datascope

// The tag that marks a resource as synthetic (issue 16: sandbox APIs answer with synthetic data only). The
// seed data's sandbox members carry it; a real member's resource does not, and a sandbox answer drops it.
const (
	EnvironmentSystem = "https://fhirwall.dev/CodeSystem/environment"
	SandboxCode       = "sandbox"
	// SandboxTag is the tag as a _tag search parameter's token (system|code).
	SandboxTag = EnvironmentSystem + "|" + SandboxCode
)

// Synthetic reports whether res may leave a sandbox API: it and every resource nested in it (contained
// resources, Parameters.parameter.resource, a nested Bundle's entries) carry meta.tag
// EnvironmentSystem|SandboxCode. The tag is fhirwall's rule, not the data's word: a resource without it is
// treated as a real member's, whatever else it says. Bundles and OperationOutcomes are envelopes the FHIR
// server makes at answer time and need no tag; what they hold does. Anything nested deeper than this package
// walks is not synthetic.
func Synthetic(res map[string]any) bool {
	if depthOver(res, maxDepth) {
		return false
	}
	synthetic := true
	eachResource(res, func(r map[string]any) {
		switch r["resourceType"] {
		case "Bundle", "OperationOutcome":
			return
		}
		synthetic = synthetic && hasSandboxTag(r)
	})
	return synthetic
}

func hasSandboxTag(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	for _, t := range objects(meta["tag"]) {
		if t["system"] == EnvironmentSystem && t["code"] == SandboxCode {
			return true
		}
	}
	return false
}
