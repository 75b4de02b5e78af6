// Package crdschema validates Kubernetes objects against CustomResourceDefinitions the
// way kube-apiserver does on create, without a server: the CRD's structural schema
// (types, enums, patterns, ranges, required fields), unknown fields refused (as with
// strict field validation, found by pruning), list-type uniqueness, and the CEL rules
// (x-kubernetes-validations). It uses k8s.io/apiextensions-apiserver's own code.
//
// Tests use it for Istio's CRDs (from the istio.io/api module) and for meshplug's
// TrafficPolicy CRD.
//
// Caveat: defaulting, ratcheting on update and ObjectMeta validation beyond pruning are
// not done; admission webhooks (Istio's validating webhook) are not run.
package crdschema

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/internal/yamldoc"
)

// Set holds the schemas of several CRDs by group, version and kind.
type Set struct {
	byGVK map[string]*version
}

type version struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

func gvk(apiVersion, kind string) string { return apiVersion + ", Kind=" + kind }

// Load reads the CRDs in the multi-document YAML files.
func Load(files ...string) (*Set, error) {
	s := &Set{byGVK: map[string]*version{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range SplitYAML(b) {
			if err := s.add(doc); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, i+1, err)
			}
		}
	}
	return s, nil
}

// SplitYAML returns the documents of a multi-document YAML stream.
func SplitYAML(b []byte) [][]byte {
	var out [][]byte
	for _, d := range yamldoc.Split(b) {
		out = append(out, d.Data)
	}
	return out
}

func (s *Set) add(doc []byte) error {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
		return err
	}
	if crd.Kind != "CustomResourceDefinition" {
		return nil
	}
	for _, v := range crd.Spec.Versions {
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return fmt.Errorf("%s %s: no schema", crd.Name, v.Name)
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
		}
		st, err := structuralschema.NewStructural(&internal)
		if err != nil {
			return fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
		}
		if errs := structuralschema.ValidateStructural(nil, st); len(errs) > 0 {
			return fmt.Errorf("%s %s: schema is not structural: %v", crd.Name, v.Name, errs.ToAggregate())
		}
		val, _, err := validation.NewSchemaValidator(&internal)
		if err != nil {
			return fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
		}
		s.byGVK[gvk(crd.Spec.Group+"/"+v.Name, crd.Spec.Names.Kind)] = &version{
			structural: st, validator: val, cel: cel.NewValidator(st, true, celconfig.PerCallLimit)}
	}
	return nil
}

// Has reports whether the set has a schema for apiVersion and kind.
func (s *Set) Has(apiVersion, kind string) bool { return s.byGVK[gvk(apiVersion, kind)] != nil }

// ValidateYAML validates one YAML (or JSON) object.
func (s *Set) ValidateYAML(doc []byte) error {
	obj, err := decode(doc)
	if err != nil {
		return err
	}
	return s.Validate(obj)
}

// Validate validates obj (as decoded from JSON): it must be of a kind in the set, have
// no unknown fields, and pass the schema, list-type and CEL validation. The error lists
// every problem with its field path.
func (s *Set) Validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	v := s.byGVK[gvk(apiVersion, kind)]
	if v == nil {
		return fmt.Errorf("no CRD schema for apiVersion %q kind %q", apiVersion, kind)
	}
	var errs field.ErrorList
	// Pruning works on a copy; what it would drop are unknown fields.
	cp, err := deepCopyJSON(obj)
	if err != nil {
		return err
	}
	for _, p := range pruning.PruneWithOptions(cp, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		errs = append(errs, field.Invalid(field.NewPath(p), nil, "unknown field"))
	}
	errs = append(errs, validation.ValidateCustomResource(nil, obj, v.validator)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	errs = append(errs, celErrs...)
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}

func deepCopyJSON(obj map[string]any) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return decode(b)
}

// decode reads YAML or JSON as the API server does: integers as int64.
func decode(doc []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}
