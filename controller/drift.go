package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// AnnotationRenderedSHA256 is set on every WasmPlugin the controller applies: the hex
// SHA-256 of the rendered spec. A live object that carries the annotation of the spec
// the controller is about to apply but whose spec differs was changed by someone else
// (drift); one with another value was rendered from an earlier policy or module.
const AnnotationRenderedSHA256 = "meshplug.io/rendered-sha256"

// driftReverted counts the WasmPlugins whose spec the controller found changed by
// another writer and put back, by filter (the controller's /metrics).
var driftReverted = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "meshplug_controller_drift_reverted_total",
	Help: "WasmPlugins whose spec was changed by another writer (kubectl edit, another field manager) and put back to the rendered spec, by filter.",
}, []string{"filter"})

func init() { ctrlmetrics.Registry.MustRegister(driftReverted) }

// normalJSON is v as encoding/json decodes it (every number a float64), so that values
// read from the API server and rendered ones compare equal when their JSON does.
func normalJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// specHash is the hex SHA-256 of spec's JSON (encoding/json sorts map keys).
func specHash(spec any) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// maxDiffPaths bounds the paths diffPaths reports.
const maxDiffPaths = 20

// diffPaths lists where got differs from want (both normalJSON values), as
// `spec.pluginConfig.default_rule (added)`, sorted, at most maxDiffPaths (then "...").
// Lists are compared whole.
func diffPaths(path string, got, want any) []string {
	var out []string
	var walk func(path string, got, want any)
	walk = func(path string, got, want any) {
		g, gok := got.(map[string]any)
		w, wok := want.(map[string]any)
		if !gok || !wok {
			if !reflect.DeepEqual(got, want) {
				out = append(out, path+" (changed)")
			}
			return
		}
		for k, gv := range g {
			wv, ok := w[k]
			if !ok {
				out = append(out, path+"."+k+" (added)")
				continue
			}
			walk(path+"."+k, gv, wv)
		}
		for k := range w {
			if _, ok := g[k]; !ok {
				out = append(out, path+"."+k+" (removed)")
			}
		}
	}
	walk(path, got, want)
	sort.Strings(out)
	if len(out) > maxDiffPaths {
		out = append(out[:maxDiffPaths], fmt.Sprintf("... %d more", len(out)-maxDiffPaths))
	}
	return out
}

// otherManagers are the field managers of o other than the controller's.
func otherManagers(o *unstructured.Unstructured) []string {
	var out []string
	for _, f := range o.GetManagedFields() {
		if f.Manager != FieldManager && !slices.Contains(out, f.Manager) {
			out = append(out, f.Manager)
		}
	}
	sort.Strings(out)
	return out
}

// replaceSpec makes live's spec exactly want (a normalJSON value) with a JSON merge
// patch computed from the difference (keys live has and want has not are set to null,
// so keys another field manager added, which server-side apply leaves in place, are
// removed), preconditioned on live's resourceVersion: a concurrent write makes it fail
// and the reconcile retry.
func replaceSpec(ctx context.Context, c client.Client, live *unstructured.Unstructured, want any) error {
	orig := live.DeepCopy()
	live.Object["spec"] = want
	return c.Patch(ctx, live, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

func driftMessage(namespace, name string, paths, managers []string) string {
	m := fmt.Sprintf("WasmPlugin %s/%s was changed outside the policy and put back to the rendered spec: %s",
		namespace, name, strings.Join(paths, ", "))
	if len(managers) > 0 {
		m += " (other field managers: " + strings.Join(managers, ", ") + ")"
	}
	return m
}
