// Package examples holds small filters written on the guest binding
// (filters/proxywasm), each a main package that builds to a .wasm and is tested through
// it in testenv. The top-level README shows them; readme_test.go keeps the two equal.
package examples
