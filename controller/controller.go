// Package controller reconciles meshplug.io/v1alpha1 TrafficPolicies into the Istio
// WasmPlugins that run their filters (envoyfilters.WasmPlugins), and serves the
// filters' .wasm modules at content-addressed URLs. See README.md.
package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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
	// ReasonOverlap: another policy of the namespace selects the same workloads with
	// the same section (overlap.go).
	ReasonOverlap = "PolicyOverlap"
	// ReasonTooLarge: a rendered object is over MaxRenderedBytes.
	ReasonTooLarge = "TooLarge"
	// ReasonDriftReverted is the reason of the Warning event recorded on a policy
	// when one of its WasmPlugins was changed by another writer and put back.
	ReasonDriftReverted = "DriftReverted"
)

var wasmPluginGVK = extensions.SchemeGroupVersion.WithKind("WasmPlugin")

// The controller's permissions (deploy/rbac, `make generate`): read policies and write
// their status, manage WasmPlugins, record events (events.k8s.io: drift reverted), and
// hold the leader election Lease in its own namespace (where leader election records
// core events). The ClusterRole holds the rules; deploy/ binds it cluster-wide, and
// with --watch-namespaces a RoleBinding to it in each watched namespace is enough
// (README.md#least-privilege).
//
// +kubebuilder:rbac:groups=meshplug.io,resources=trafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshplug.io,resources=trafficpolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups=extensions.istio.io,resources=wasmplugins,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=meshplug-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups=core,namespace=meshplug-system,resources=events,verbs=create;patch

// Reconciler reconciles TrafficPolicies into WasmPlugins.
type Reconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// Reader reads from the API server directly: ownership is checked on the live
	// object, never on a cache that may lag.
	Reader client.Reader
	// Options render the WasmPlugins (module URLs and sha256).
	Options envoyfilters.Options
	// Recorder records events on policies (drift reverted); nil records none.
	Recorder events.EventRecorder
	// Workers is how many policies are reconciled at once (default 4); one policy is
	// never reconciled by two workers at once.
	Workers int

	name string // of the controller; "trafficpolicy" when empty
}

// SetupWithManager registers the reconciler: it watches TrafficPolicies (spec changes
// and deletions, which also bring back the policies of the namespace that overlap the
// changed one) and every WasmPlugin whose name is <policy>-<filter>, owned or not, so
// an edited, deleted or foreign object brings its policy back to reconcile.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(or(r.name, "trafficpolicy")).
		For(&v1alpha1.TrafficPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&extensions.WasmPlugin{}, handler.EnqueueRequestsFromMapFunc(policyOf)).
		Watches(&v1alpha1.TrafficPolicy{}, overlapHandler(mgr.GetClient())).
		WithOptions(ctrlcontroller.Options{MaxConcurrentReconciles: max(r.Workers, 1), SkipNameValidation: ptrTo(r.name != "")}).
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
// sets: the policy is the source of truth for objects it owns) and makes its spec
// exactly the rendered one (keys another field manager added are removed: drift),
// skips and reports any that exist without the policy's controller owner reference,
// refuses the sections an older overlapping policy wins (overlap.go), refuses objects
// too big to store (size.go), deletes the ones it owns that the policy no longer
// renders, and writes the status. One section failing does not stop the others.
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
		return reconcile.Result{}, joinErr(r.adoptKept(ctx, &p), r.writeStatus(ctx, &p, st))
	}
	st.set(InvalidSpec, false, ReasonValid, "the spec is valid")

	desired, err := envoyfilters.WasmPlugins(&p, r.Options)
	if err != nil {
		st.set(Ready, false, ReasonRenderFailed, err.Error())
		return reconcile.Result{}, joinErr(r.adoptKept(ctx, &p), r.writeStatus(ctx, &p, st))
	}
	var others v1alpha1.TrafficPolicyList
	if err := r.Client.List(ctx, &others, client.InNamespace(p.Namespace)); err != nil {
		return reconcile.Result{}, err
	}
	ov := findOverlaps(&p, others.Items)
	refused, overrides := ov.messages(p.Namespace)

	keep := map[string]bool{}
	// conflicts: foreign objects; tooBig: refused for their size (the spec must
	// change, no retry); failures: API errors (retried).
	var conflicts, tooBig, failures, drifts []string
	for _, w := range desired {
		sec := sectionOf(w)
		if _, ok := ov.refused[sec.Field]; ok {
			continue // not kept: an object the policy applied before is pruned
		}
		// Kept even when applying fails: the last applied version stays.
		keep[w.Name] = true
		res, err := r.apply(ctx, &p, w)
		var se sizeError
		switch {
		case errors.As(err, &se):
			tooBig = append(tooBig, err.Error())
		case err != nil:
			failures = append(failures, fmt.Sprintf("applying WasmPlugin %s/%s: %v", w.Namespace, w.Name, err))
		case res.conflict != "":
			conflicts = append(conflicts, res.conflict)
		}
		if res.drift != "" {
			drifts = append(drifts, res.drift)
			driftReverted.WithLabelValues(sec.Filter).Inc()
			log.FromContext(ctx).Info("drift reverted", "wasmplugin", w.Name, "detail", res.drift)
			if r.Recorder != nil {
				r.Recorder.Eventf(&p, nil, corev1.EventTypeWarning, ReasonDriftReverted, "Revert", "%s", res.drift)
			}
		}
	}
	if err := r.prune(ctx, p.Namespace, p.Name, keep); err != nil {
		failures = append(failures, err.Error())
	}
	if len(drifts) > 0 {
		st.drift = &v1alpha1.DriftReport{Time: metav1.Now(), Message: truncate(strings.Join(drifts, "; "))}
	}
	all := slices.Concat(conflicts, refused, overrides)
	switch {
	case len(conflicts) > 0:
		st.set(Conflict, true, ReasonConflict, strings.Join(all, "; "))
	case len(all) > 0:
		st.set(Conflict, true, ReasonOverlap, strings.Join(all, "; "))
	default:
		st.set(Conflict, false, ReasonNoConflict, "every rendered object is owned by this policy and no other policy selects the same workloads with the same sections")
	}
	switch {
	case len(failures) > 0:
		st.set(Ready, false, ReasonApplyFailed, strings.Join(slices.Concat(failures, tooBig, conflicts, refused), "; "))
	case len(tooBig) > 0:
		st.set(Ready, false, ReasonTooLarge, strings.Join(slices.Concat(tooBig, conflicts, refused), "; "))
	case len(conflicts) > 0:
		st.set(Ready, false, ReasonConflict, strings.Join(slices.Concat(conflicts, refused), "; "))
	case len(refused) > 0:
		st.set(Ready, false, ReasonOverlap, strings.Join(refused, "; "))
	default:
		st.set(Ready, true, ReasonApplied, fmt.Sprintf("%d WasmPlugin(s) applied", len(keep)))
	}
	err = r.writeStatus(ctx, &p, st)
	if len(failures) > 0 {
		err = joinErr(errors.New(strings.Join(failures, "; ")), err)
	}
	return reconcile.Result{}, err
}

// sectionOf is the section a rendered WasmPlugin runs.
func sectionOf(w *extensions.WasmPlugin) v1alpha1.Section {
	for _, sec := range v1alpha1.Sections {
		if sec.Filter == w.Labels[envoyfilters.LabelFilter] {
			return sec
		}
	}
	return v1alpha1.Section{}
}

// sizeError: the rendered object is too big to store (checkSize).
type sizeError struct{ error }

// applied is what apply found: a foreign object of the name (conflict: nothing was
// written), or drift it reverted.
type applied struct{ conflict, drift string }

// apply makes the WasmPlugin w exactly as rendered, unless an object of that name
// exists without p's controller reference: then it returns a message naming the object
// and its field managers, and writes nothing. It server-side applies w (forced), then
// compares the result's spec with the rendered one: keys another field manager added
// survive an apply (it removes only fields it owned), so a difference left is replaced
// (replaceSpec). Drift is reported when the live object carried the annotation of this
// very rendering but another spec (a value changed or a key added), or when the apply
// left a difference.
func (r *Reconciler) apply(ctx context.Context, p *v1alpha1.TrafficPolicy, w *extensions.WasmPlugin) (applied, error) {
	u, want, hash, err := prepare(p, w)
	if err != nil {
		return applied{}, err
	}
	if err := checkSize(u); err != nil {
		return applied{}, sizeError{err}
	}

	var live unstructured.Unstructured
	live.SetGroupVersionKind(wasmPluginGVK)
	err = r.Reader.Get(ctx, client.ObjectKeyFromObject(w), &live)
	var res applied
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return res, err
	case !ownedBy(&live, p.Name):
		var managers []string
		for _, f := range live.GetManagedFields() {
			if !slices.Contains(managers, f.Manager) {
				managers = append(managers, f.Manager)
			}
		}
		res.conflict = fmt.Sprintf("WasmPlugin %s/%s exists and is not owned by this policy (field managers: %s)",
			w.Namespace, w.Name, strings.Join(managers, ", "))
		return res, nil
	default:
		if err := r.adopt(ctx, &live, p); err != nil {
			return res, err
		}
		if live.GetAnnotations()[AnnotationRenderedSHA256] == hash {
			got, err := normalJSON(live.Object["spec"])
			if err != nil {
				return res, err
			}
			if paths := diffPaths("spec", got, want); len(paths) > 0 {
				res.drift = driftMessage(w.Namespace, w.Name, paths, otherManagers(&live))
			}
		}
	}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return res, err
	}
	// u is now the stored object.
	got, err := normalJSON(u.Object["spec"])
	if err != nil {
		return res, err
	}
	if paths := diffPaths("spec", got, want); len(paths) > 0 {
		if res.drift == "" {
			res.drift = driftMessage(w.Namespace, w.Name, paths, otherManagers(u))
		}
		if err := replaceSpec(ctx, r.Client, u, want); err != nil {
			return res, err
		}
	}
	return res, nil
}

// prepare is w as the controller applies it: the unstructured object with p as its
// controller and the AnnotationRenderedSHA256 of its spec, the spec (normalJSON) and
// that hash.
func prepare(p *v1alpha1.TrafficPolicy, w *extensions.WasmPlugin) (u *unstructured.Unstructured, spec any, hash string, err error) {
	if u, err = toUnstructured(w); err != nil {
		return nil, nil, "", err
	}
	if spec, err = normalJSON(u.Object["spec"]); err != nil {
		return nil, nil, "", err
	}
	if hash, err = specHash(spec); err != nil {
		return nil, nil, "", err
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationRenderedSHA256] = hash
	u.SetAnnotations(ann)
	u.SetOwnerReferences([]metav1.OwnerReference{controllerRef(p)})
	return u, spec, hash, nil
}

// controllerRef is p as the controller owner reference of its objects. No
// blockOwnerDeletion: setting it needs update on trafficpolicies/finalizers, and the
// controller does not need foreground deletion.
func controllerRef(p *v1alpha1.TrafficPolicy) metav1.OwnerReference {
	ref := metav1.NewControllerRef(p, v1alpha1.GroupVersion.WithKind(v1alpha1.Kind))
	ref.BlockOwnerDeletion = nil
	return *ref
}

// adopt replaces in live the controller references to an earlier policy of p's name
// (another UID: deleted and recreated) with p's, so that a garbage collector does not
// delete an object p keeps (for an invalid spec) or is about to apply. A merge patch
// replaces the whole list; it is preconditioned on the resourceVersion read, so a
// concurrent change makes it fail and the reconcile retry.
func (r *Reconciler) adopt(ctx context.Context, live *unstructured.Unstructured, p *v1alpha1.TrafficPolicy) error {
	refs := live.GetOwnerReferences()
	keep := refs[:0:0]
	stale := false
	for _, ref := range refs {
		if ref.Kind == v1alpha1.Kind && ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Name == p.Name && ref.UID != p.UID {
			stale = true
			continue
		}
		keep = append(keep, ref)
	}
	if !stale {
		return nil
	}
	if !slices.ContainsFunc(keep, func(ref metav1.OwnerReference) bool { return ref.UID == p.UID }) {
		keep = append(keep, controllerRef(p))
	}
	orig := live.DeepCopy()
	live.SetOwnerReferences(keep)
	return r.Client.Patch(ctx, live, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// adoptKept adopts (adopt) every WasmPlugin labelled as p's whose controller is a
// policy of p's name, read live: the objects kept while p's spec is invalid or does
// not render.
func (r *Reconciler) adoptKept(ctx context.Context, p *v1alpha1.TrafficPolicy) error {
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(wasmPluginGVK.GroupVersion().WithKind("WasmPluginList"))
	if err := r.Reader.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{
		envoyfilters.LabelManagedBy: "meshplug", envoyfilters.LabelPolicy: p.Name}); err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		if w := &list.Items[i]; ownedBy(w, p.Name) {
			errs = append(errs, r.adopt(ctx, w, p))
		}
	}
	return errors.Join(errs...)
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

// status is the conditions one reconcile computed, and the drift it reverted.
type status struct {
	gen   int64
	conds []metav1.Condition
	drift *v1alpha1.DriftReport
}

// maxMessage is metav1.Condition's message limit (the API server refuses longer).
const maxMessage = 32768

// truncate cuts msg to maxMessage bytes of valid UTF-8.
func truncate(msg string) string {
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage-len(" (truncated)")], "") + " (truncated)"
	}
	return msg
}

func (s *status) set(typ string, ok bool, reason, msg string) {
	msg = truncate(msg)
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
	if s.drift != nil {
		p.Status.LastDrift = s.drift
	}
	if equalStatus(before, &p.Status) {
		return nil
	}
	// A merge patch without resourceVersion: the status is computed from the whole
	// spec of this generation, so a newer write by another reconcile of the same
	// policy (the work queue never runs two at once) is not lost.
	return r.Client.Status().Patch(ctx, p, client.MergeFrom(orig))
}

func equalStatus(a, b *v1alpha1.TrafficPolicyStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) ||
		(a.LastDrift == nil) != (b.LastDrift == nil) ||
		a.LastDrift != nil && (!a.LastDrift.Time.Equal(&b.LastDrift.Time) || a.LastDrift.Message != b.LastDrift.Message) {
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

func ptrTo[T any](v T) *T { return &v }

func joinErr(a, b error) error {
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; writing status: %v", a, b)
}
