package datascope

// LeakedMoney is leakedMoney for the external tests (enforce_test.go).
var LeakedMoney = leakedMoney
