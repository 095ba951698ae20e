package decision

import "strings"

// sandboxSuffix ends every sandbox API's name (config.SandboxSuffix; config validation makes an API named so
// the sandbox of the API named by the rest, and every sandbox named so). The rule keys on the name, not on a
// setting, so no configuration can give an API of that name real members' data.
const sandboxSuffix = "-sandbox"

// isSandbox says whether api answers with synthetic data only: every resource that leaves carries
// datascope.SandboxTag (enforcer.keep), and searches are narrowed to it (Decide).
func isSandbox(api string) bool {
	base, ok := strings.CutSuffix(api, sandboxSuffix)
	return ok && base != ""
}

// baseAPI is the API whose policy facts api's requests are decided with: a sandbox's base API, or api.
func baseAPI(api string) string {
	if isSandbox(api) {
		return strings.TrimSuffix(api, sandboxSuffix)
	}
	return api
}
