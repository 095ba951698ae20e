package decision

// Sandbox reports whether d was made for a sandbox API (config apis[].sandbox_of, named "<base>-sandbox"):
// an adapter that answers such a request itself holds it to synthetic data, as the core holds the FHIR
// server's answers (sandbox.go). It keys on the same name rule, so no adapter and the core can disagree.
func (d *Decision) Sandbox() bool {
	return d != nil && isSandbox(d.Input.API)
}
