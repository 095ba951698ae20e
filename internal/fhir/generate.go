package fhir

//go:generate go run ./gen/compartment -out patient_compartment_gen.go
