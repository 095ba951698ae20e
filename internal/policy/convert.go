package policy

import "encoding/json"

// convert maps OPA's generic result value onto a typed struct.
func convert(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
