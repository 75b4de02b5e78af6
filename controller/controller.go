// Package controller reconciles meshplug.io/v1alpha1 TrafficPolicies into the Istio
// WasmPlugins that run their filters (envoyfilters.WasmPlugins), and serves the
// filters' .wasm modules at content-addressed URLs. See README.md.
package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

// FieldManager is the server-side apply field manager of everything the controller
// writes.
const FieldManager = "meshplug"

// Condition types of TrafficPolicy status.
const (
	// Ready is True when every rendered object is applied as rendered.
	Ready = "Ready"
	// InvalidSpec is True when the policy fails validation (the message names the
	// field path); nothing is applied and the objects of the last valid generation are
	// kept.
	InvalidSpec = "InvalidSpec"
	// Conflict is True when an object the policy renders exists but is not owned by
	// the policy; the controller leaves it untouched and names it in the message.
	Conflict = "Conflict"
)

// Reasons of the conditions.
const (
	ReasonApplied      = "Applied"
	ReasonInvalidSpec  = "InvalidSpec"
	ReasonValid        = "Valid"
	ReasonRenderFailed = "RenderFailed"
	ReasonApplyFailed  = "ApplyFailed"
	ReasonConflict     = "NotOwned"
	ReasonNoConflict   = "NoConflict"
)

var wasmPluginGVK = extensions.SchemeGroupVersion.WithKind("WasmPlugin")

// The controller's permissions (deploy/rbac, `make generate`): read policies and write
// their status, manage WasmPlugins, record events, and hold the leader election Lease
// in its own namespace.
//
// +kubebuilder:rbac:groups=meshplug.io,resources=trafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshplug.io,resources=trafficpolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups=extensions.istio.io,resources=wasmplugins,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=core,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=meshplug-system,resources=leases,verbs=get;create;update

// Reconciler reconciles TrafficPolicies into WasmPlugins.
type Reconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// Reader reads from the API server directly: ownership is checked on the live
	// object, never on a cache that may lag.
	Reader client.Reader
	// Options render the WasmPlugins (module URLs and sha256).
	Options envoyfilters.Options
	// Workers is how many policies are reconciled at once (default 4); one policy is
	// never reconciled by two workers at once.
	Workers int
}

// SetupWithManager registers the reconciler: it watches TrafficPolicies (spec changes
// and deletions) and every WasmPlugin whose name is <policy>-<filter>, owned or not, so
// an edited, deleted or foreign object brings its policy back to reconcile.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("trafficpolicy").
		For(&v1alpha1.TrafficPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&extensions.WasmPlugin{}, handler.EnqueueRequestsFromMapFunc(policyOf)).
		WithOptions(ctrlcontroller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// policyOf maps a WasmPlugin named <policy>-<filter> to its policy.
func policyOf(_ context.Context, o client.Object) []reconcile.Request {
	for _, sec := range v1alpha1.Sections {
		if name, ok := strings.CutSuffix(o.GetName(), "-"+sec.Filter); ok && name != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}
	}
	return nil
}

// Reconcile brings the WasmPlugins of one policy to what the policy renders: applies
// each (server-side apply, field manager "meshplug", forcing ownership of the fields it
// sets: the policy is the source of truth for objects it owns), skips and reports any
// that exist without the policy's controller owner reference, deletes the ones it owns
// that the policy no longer renders, and writes the status.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var p v1alpha1.TrafficPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted: the API server's garbage collector removes owned objects in a
			// cluster; pruning here too makes deletion prompt and works without it.
			return reconcile.Result{}, r.prune(ctx, req.Namespace, req.Name, nil)
		}
		return reconcile.Result{}, err
	}
	if !p.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	// Objects read through a typed client have no TypeMeta; Validate checks it.
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), v1alpha1.Kind
	st := status{gen: p.Generation}

	if err := p.Validate(); err != nil {
		st.set(InvalidSpec, true, ReasonInvalidSpec, err.Error())
		st.set(Ready, false, ReasonInvalidSpec, "the spec is invalid; the objects of the last valid spec are kept")
		return reconcile.Result{}, r.writeStatus(ctx, &p, st)
	}
	st.set(InvalidSpec, false, ReasonValid, "the spec is valid")

	desired, err := envoyfilters.WasmPlugins(&p, r.Options)
	if err != nil {
		st.set(Ready, false, ReasonRenderFailed, err.Error())
		return reconcile.Result{}, r.writeStatus(ctx, &p, st)
	}
	keep := map[string]bool{}
	var conflicts, failures []string
	for _, w := range desired {
		keep[w.Name] = true
		msg, err := r.apply(ctx, &p, w)
		if err != nil {
			// Status first, then the error: the work queue retries with backoff.
			st.set(Ready, false, ReasonApplyFailed, err.Error())
			st.set(Conflict, len(conflicts) > 0, conflictReason(conflicts), conflictMessage(conflicts))
			return reconcile.Result{}, joinErr(err, r.writeStatus(ctx, &p, st))
		}
		if msg != "" {
			conflicts = append(conflicts, msg)
		}
	}
	if err := r.prune(ctx, p.Namespace, p.Name, keep); err != nil {
		failures = append(failures, err.Error())
	}
	st.set(Conflict, len(conflicts) > 0, conflictReason(conflicts), conflictMessage(conflicts))
	switch {
	case len(conflicts) > 0:
		st.set(Ready, false, ReasonConflict, conflictMessage(conflicts))
	case len(failures) > 0:
		st.set(Ready, false, ReasonApplyFailed, strings.Join(failures, "; "))
	default:
		st.set(Ready, true, ReasonApplied, fmt.Sprintf("%d WasmPlugin(s) applied", len(desired)))
	}
	err = r.writeStatus(ctx, &p, st)
	if len(failures) > 0 && err == nil {
		err = fmt.Errorf("%s", strings.Join(failures, "; "))
	}
	return reconcile.Result{}, err
}

// apply server-side applies w unless an object of that name exists without p's
// controller reference; then it returns a message naming the object and its field
// managers, and writes nothing.
func (r *Reconciler) apply(ctx context.Context, p *v1alpha1.TrafficPolicy, w *extensions.WasmPlugin) (string, error) {
	var live unstructured.Unstructured
	live.SetGroupVersionKind(wasmPluginGVK)
	err := r.Reader.Get(ctx, client.ObjectKeyFromObject(w), &live)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", err
	case !ownedBy(&live, p.Name):
		var managers []string
		for _, f := range live.GetManagedFields() {
			if !slices.Contains(managers, f.Manager) {
				managers = append(managers, f.Manager)
			}
		}
		return fmt.Sprintf("WasmPlugin %s/%s exists and is not owned by this policy (field managers: %s)",
			w.Namespace, w.Name, strings.Join(managers, ", ")), nil
	}
	if err == nil {
		if err := r.dropStaleOwner(ctx, &live, p); err != nil {
			return "", err
		}
	}
	u, err := toUnstructured(w)
	if err != nil {
		return "", err
	}
	// No blockOwnerDeletion: setting it needs update on trafficpolicies/finalizers, and
	// the controller does not need foreground deletion.
	ref := metav1.NewControllerRef(p, v1alpha1.GroupVersion.WithKind(v1alpha1.Kind))
	ref.BlockOwnerDeletion = nil
	u.SetOwnerReferences([]metav1.OwnerReference{*ref})
	return "", r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(FieldManager), client.ForceOwnership)
}

// dropStaleOwner removes from live the controller references to an earlier policy of
// p's name (another UID): the apply below adds p's, and an object may have only one
// controller. A merge patch replaces the whole list; it is preconditioned on the
// resourceVersion read, so a concurrent change makes it fail and the reconcile retry.
func (r *Reconciler) dropStaleOwner(ctx context.Context, live *unstructured.Unstructured, p *v1alpha1.TrafficPolicy) error {
	refs := live.GetOwnerReferences()
	keep := refs[:0:0]
	for _, ref := range refs {
		if ref.Kind == v1alpha1.Kind && ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Name == p.Name && ref.UID != p.UID {
			continue
		}
		keep = append(keep, ref)
	}
	if len(keep) == len(refs) {
		return nil
	}
	orig := live.DeepCopy()
	live.SetOwnerReferences(keep)
	return r.Client.Patch(ctx, live, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// toUnstructured is w exactly as `meshplug render` writes it (envoyfilters.MarshalYAML:
// failStrategy and phase always present), so the controller and the CLI apply the same
// fields.
func toUnstructured(w *extensions.WasmPlugin) (*unstructured.Unstructured, error) {
	y, err := envoyfilters.MarshalYAML(w)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// prune deletes the WasmPlugins labelled as the policy's whose controller is the policy
// (ownedBy) and that are not in keep. Deletion is preconditioned on the object's UID.
func (r *Reconciler) prune(ctx context.Context, namespace, policy string, keep map[string]bool) error {
	var list extensions.WasmPluginList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{
		envoyfilters.LabelManagedBy: "meshplug", envoyfilters.LabelPolicy: policy}); err != nil {
		return err
	}
	var errs []string
	for _, w := range list.Items {
		if keep[w.Name] {
			continue
		}
		if !ownedBy(w, policy) {
			continue
		}
		uidW := w.UID
		err := r.Client.Delete(ctx, w, client.Preconditions{UID: &uidW})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Sprintf("pruning WasmPlugin %s/%s: %v", w.Namespace, w.Name, err))
		} else if err == nil {
			log.FromContext(ctx).Info("pruned", "wasmplugin", w.Name)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// ownedBy: o's controller is the TrafficPolicy named policy in o's namespace. The UID
// is not compared: a reference with another UID is a deleted policy of the same name
// (two cannot exist at once), whose objects the current one takes over (the apply
// replaces the stale reference) or prunes, rather than reporting them as conflicts
// until the garbage collector runs.
func ownedBy(o metav1.Object, policy string) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.Name == policy && ref.Kind == v1alpha1.Kind &&
		ref.APIVersion == v1alpha1.GroupVersion.String()
}

// status is the conditions one reconcile computed.
type status struct {
	gen   int64
	conds []metav1.Condition
}

// maxMessage is metav1.Condition's message limit (the API server refuses longer).
const maxMessage = 32768

func (s *status) set(typ string, ok bool, reason, msg string) {
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage-len(" (truncated)")], "") + " (truncated)"
	}
	c := metav1.ConditionFalse
	if ok {
		c = metav1.ConditionTrue
	}
	s.conds = append(s.conds, metav1.Condition{Type: typ, Status: c, Reason: reason, Message: msg, ObservedGeneration: s.gen})
}

// writeStatus merges the computed conditions (keeping lastTransitionTime of those
// that did not change) and writes the status when it differs.
func (r *Reconciler) writeStatus(ctx context.Context, p *v1alpha1.TrafficPolicy, s status) error {
	orig := p.DeepCopy()
	before := &orig.Status
	for _, c := range s.conds {
		meta.SetStatusCondition(&p.Status.Conditions, c)
	}
	sort.SliceStable(p.Status.Conditions, func(i, j int) bool { return p.Status.Conditions[i].Type < p.Status.Conditions[j].Type })
	p.Status.ObservedGeneration = s.gen
	if equalStatus(before, &p.Status) {
		return nil
	}
	// A merge patch without resourceVersion: the status is computed from the whole
	// spec of this generation, so a newer write by another reconcile of the same
	// policy (the work queue never runs two at once) is not lost.
	return r.Client.Status().Patch(ctx, p, client.MergeFrom(orig))
}

func equalStatus(a, b *v1alpha1.TrafficPolicyStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

func conflictReason(c []string) string {
	if len(c) > 0 {
		return ReasonConflict
	}
	return ReasonNoConflict
}

func conflictMessage(c []string) string {
	if len(c) == 0 {
		return "every rendered object is owned by this policy"
	}
	return strings.Join(c, "; ")
}

func joinErr(a, b error) error {
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; writing status: %v", a, b)
}
