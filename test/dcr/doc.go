// Package dcr is the end-to-end test of Dynamic Client Registration (adapters/registry/dcr): a real client
// library (openid-client, npm) registers, reads back and is refused at fhirwall's /register, served on top of
// the real PostgreSQL registry with a real audit spool. The tests are behind the e2e build tag.
package dcr
