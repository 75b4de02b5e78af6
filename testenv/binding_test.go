package testenv

import (
	"context"
	"testing"
)

// TestBindingModuleChecks builds a module that links the guest binding
// (filters/proxywasm) and checks its imports and exports against this host.
func TestBindingModuleChecks(t *testing.T) {
	wasm, err := BuildGuest("testdata/bindingcheck")
	if err != nil {
		t.Skipf("guest binding does not build: %v", err)
	}
	if _, err := compile(context.Background(), "bindingcheck", wasm); err != nil {
		t.Fatal(err)
	}
}
