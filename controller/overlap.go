package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// Two policies of one namespace overlap on a section when both have it and they can
// select the same proxies:
//
//   - both have a selector and no label has different values in the two (a pod
//     carrying the union of both label sets matches both; the controller does not look
//     at pods, so selectors that could match the same pods count);
//   - both have targetRefs and one target (group, kind, name) is in both.
//
// A selector and targetRefs never overlap (sidecars vs gateways and waypoints), nor do
// policies of different namespaces (Istio's root namespace, whose selectors apply to
// every namespace, is not looked at).
//
// Rule: for each section, the oldest policy (creationTimestamp, then name) among
// those that overlap on it wins. A policy's section is refused when an older policy
// of the namespace that overlaps it on that section exists (valid or not, whether or
// not that older one runs the section itself): it is not applied, its WasmPlugin for
// the section is pruned, and the policy reports Conflict=True (reason PolicyOverlap)
// naming the older policy, and Ready=False. The older policy reports Conflict=True
// naming the newer ones it overrides and stays Ready. When the older policy is deleted
// or stops overlapping, the newer one is reconciled and applies the section.

// overlapping: a and b can select the same proxies (see above).
func overlapping(a, b *v1alpha1.TrafficPolicySpec) bool {
	switch {
	case a.Selector != nil && b.Selector != nil:
		for k, v := range a.Selector.MatchLabels {
			if w, ok := b.Selector.MatchLabels[k]; ok && w != v {
				return false
			}
		}
		return true
	case a.TargetRefs != nil && b.TargetRefs != nil:
		for _, r := range a.TargetRefs {
			if slices.Contains(b.TargetRefs, r) {
				return true
			}
		}
	}
	return false
}

// sharedSections are the fields (v1alpha1.Section.Field) of the sections a and b
// overlap on.
func sharedSections(a, b *v1alpha1.TrafficPolicySpec) []string {
	if !overlapping(a, b) {
		return nil
	}
	var out []string
	for _, sec := range v1alpha1.Sections {
		if sec.Spec(a) != nil && sec.Spec(b) != nil {
			out = append(out, sec.Field)
		}
	}
	return out
}

// older: a wins over b (created earlier, or in the same second with a smaller name).
func older(a, b *v1alpha1.TrafficPolicy) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// overlaps is what one policy's reconcile finds among the policies of its namespace.
type overlaps struct {
	// refused maps a section field to the oldest older policy that overlaps on it.
	refused map[string]string
	// overrides maps a section field to the newer policies refused because of this one.
	overrides map[string][]string
}

// findOverlaps compares p with the other policies of its namespace (being deleted ones
// excluded).
func findOverlaps(p *v1alpha1.TrafficPolicy, others []v1alpha1.TrafficPolicy) overlaps {
	o := overlaps{refused: map[string]string{}, overrides: map[string][]string{}}
	oldest := map[string]*v1alpha1.TrafficPolicy{}
	for i := range others {
		q := &others[i]
		if q.UID == p.UID || q.Name == p.Name || !q.DeletionTimestamp.IsZero() {
			continue
		}
		for _, f := range sharedSections(&p.Spec, &q.Spec) {
			if older(q, p) {
				if cur, ok := oldest[f]; !ok || older(q, cur) {
					oldest[f] = q
				}
			} else {
				o.overrides[f] = append(o.overrides[f], q.Name)
			}
		}
	}
	for f, q := range oldest {
		o.refused[f] = q.Name
	}
	for f := range o.overrides {
		slices.Sort(o.overrides[f])
	}
	return o
}

// messages describe o for the Conflict condition, in section order.
func (o overlaps) messages(ns string) (refused, overrides []string) {
	for _, sec := range v1alpha1.Sections {
		if q, ok := o.refused[sec.Field]; ok {
			refused = append(refused, fmt.Sprintf("section %s refused: the older TrafficPolicy %s/%s selects the same workloads with a %s section and wins (oldest creationTimestamp, then name)",
				sec.Field, ns, q, sec.Field))
		}
		if qs, ok := o.overrides[sec.Field]; ok {
			overrides = append(overrides, fmt.Sprintf("section %s: newer TrafficPolicies selecting the same workloads are refused for it: %s",
				sec.Field, ns+"/"+strings.Join(qs, ", "+ns+"/")))
		}
	}
	return refused, overrides
}

// overlapHandler enqueues, on a policy's creation, spec change or deletion, the other
// policies of its namespace that overlap it (before or after the change), so that
// both sides of an overlap report it and a refused section is applied once the policy
// that won is gone.
func overlapHandler(c client.Reader) handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		var ps []*v1alpha1.TrafficPolicy
		for _, o := range objs {
			if p, ok := o.(*v1alpha1.TrafficPolicy); ok {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			return
		}
		var l v1alpha1.TrafficPolicyList
		if err := c.List(ctx, &l, client.InNamespace(ps[0].Namespace)); err != nil {
			return
		}
		for i := range l.Items {
			other := &l.Items[i]
			if other.Name == ps[0].Name {
				continue
			}
			for _, p := range ps {
				if len(sharedSections(&p.Spec, &other.Spec)) > 0 {
					q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: other.Namespace, Name: other.Name}})
					break
				}
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() {
				return
			}
			enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
	}
}
