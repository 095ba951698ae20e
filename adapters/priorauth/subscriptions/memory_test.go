package subscriptions

import "testing"

func TestMemoryStoreKeepsTheStoreContract(t *testing.T) {
	storeContract(t, func(*testing.T) Store { return NewMemoryStore() })
}
