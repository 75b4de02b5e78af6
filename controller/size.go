package controller

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// EtcdRequestLimit is etcd's default --max-request-bytes (1.5 MiB), the size of the
// largest write the API server can make: a bigger object is refused with
// "etcdserver: request is too large". Clusters may raise it; managed clusters usually
// do not let you.
const EtcdRequestLimit = 1572864

// sizeReserve is kept free under EtcdRequestLimit for what the API server adds to a
// rendered object before storing it (uid, resourceVersion, timestamps, the managed
// fields entries of other writers and of the drift repair) and etcd's own framing.
const sizeReserve = 64 << 10

// MaxRenderedBytes is the largest estimated stored size (storedSize) of a rendered
// WasmPlugin the controller applies; a bigger one is refused up front, naming the
// object, its size and the limit, and the policy's other sections are still applied.
const MaxRenderedBytes = EtcdRequestLimit - sizeReserve

// storedSize estimates the bytes the API server stores for u applied by server-side
// apply: its JSON plus the managed fields entry listing every field it sets (each key
// of pluginConfig, which the WasmPlugin CRD leaves schemaless, is one entry; lists are
// atomic, one entry each).
func storedSize(u *unstructured.Unstructured) (int, error) {
	j, err := json.Marshal(u.Object)
	if err != nil {
		return 0, err
	}
	tv, err := typed.DeducedParseableType.FromUnstructured(u.Object)
	if err != nil {
		return 0, err
	}
	set, err := tv.ToFieldSet()
	if err != nil {
		return 0, err
	}
	fs, err := set.ToJSON()
	if err != nil {
		return 0, err
	}
	return len(j) + len(fs), nil
}

// checkSize refuses u when storedSize exceeds MaxRenderedBytes.
func checkSize(u *unstructured.Unstructured) error {
	n, err := storedSize(u)
	if err != nil {
		return err
	}
	if n > MaxRenderedBytes {
		return fmt.Errorf("%s %s/%s not applied: it would be about %d bytes stored (its JSON plus server-side apply's managed fields), over the %d-byte ceiling the controller keeps under etcd's default request limit of %d bytes (1.5 MiB, --max-request-bytes); move large key lists out of the policy (controller/README.md#size-limits)",
			u.GetKind(), u.GetNamespace(), u.GetName(), n, MaxRenderedBytes, EtcdRequestLimit)
	}
	return nil
}
