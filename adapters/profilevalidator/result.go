package profilevalidator

// Result is what the validator concluded about one resource.
type Result struct {
	// Valid: no issue of severity error or fatal.
	Valid bool
	// Errors counts the issues of severity error or fatal.
	Errors int
	// Outcome is the validator's OperationOutcome (JSON), every issue included: what a refused client gets.
	Outcome []byte
}
