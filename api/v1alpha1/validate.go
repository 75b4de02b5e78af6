package v1alpha1

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/filters/configjson"
)

// Decode reads one TrafficPolicy from YAML or JSON strictly, as the filters read their
// configs (configjson): unknown and duplicate fields and wrong types are errors naming
// the field path (`spec.auth.rules[0].match.prefx: unknown field`).
func Decode(doc []byte) (*TrafficPolicy, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, configjson.Errorf("", "invalid YAML: %v", err)
	}
	var p TrafficPolicy
	if err := configjson.Unmarshal(j, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks p as the API server does with the CRD (kind, selector or targetRefs,
// at least one section) and then each section with its filter's own Compile, so that
// `meshplug validate` and the controller refuse what the filter would refuse at
// configure time. Every problem is reported as a *configjson.FieldError with its path
// from the object's root (`spec.auth.rules[2].match.regex: invalid regexp: ...`); several
// problems come as a configjson.ListError.
func (p *TrafficPolicy) Validate() error {
	var errs configjson.Errors
	if p.APIVersion != GroupVersion.String() {
		errs.Add("apiVersion", "must be %q, got %q", GroupVersion.String(), p.APIVersion)
	}
	if p.Kind != Kind {
		errs.Add("kind", "must be %q, got %q", Kind, p.Kind)
	}
	if p.Name == "" {
		errs.Add("metadata.name", "required")
	} else if msgs := validation.IsDNS1123Subdomain(p.Name + longestSuffix()); len(msgs) > 0 {
		// The rendered objects are named <name>-<filter>.
		errs.Add("metadata.name", "must be a DNS subdomain short enough for the rendered <name>-<filter> objects: %s", strings.Join(msgs, "; "))
	}
	s := &p.Spec
	switch {
	case s.Selector != nil && s.TargetRefs != nil:
		errs.Add("spec", "exactly one of selector and targetRefs is required")
	case s.Selector == nil && s.TargetRefs == nil:
		errs.Add("spec", "exactly one of selector and targetRefs is required")
	case s.Selector != nil && len(s.Selector.MatchLabels) == 0:
		errs.Add("spec.selector.matchLabels", "at least one label is required")
	case s.TargetRefs != nil:
		if len(s.TargetRefs) == 0 || len(s.TargetRefs) > 16 {
			errs.Add("spec.targetRefs", "must name 1 to 16 targets, got %d", len(s.TargetRefs))
		}
		for i, r := range s.TargetRefs {
			path := configjson.Index("spec.targetRefs", i)
			if !(r.Group == "gateway.networking.k8s.io" && r.Kind == "Gateway" || r.Group == "" && r.Kind == "Service") {
				errs.Add(path, "targetRefs may name a Gateway (group gateway.networking.k8s.io) or a Service (group \"\"), got group %q kind %q", r.Group, r.Kind)
			}
			if r.Name == "" {
				errs.Add(configjson.Field(path, "name"), "required")
			}
		}
	}
	p.validateAttachment(&errs)
	n := 0
	for _, sec := range Sections {
		spec := sec.Spec(s)
		if spec == nil {
			continue
		}
		n++
		errs.AddErr("spec."+sec.Field, sec.Compile(spec))
	}
	if n == 0 {
		errs.Add("spec", "at least one section is required (%s)", sectionNames())
	}
	return errs.Err()
}

// longestSuffix is the longest "-<filter>" the renderers append to a policy's name.
func longestSuffix() string {
	out := "-routes"
	for _, s := range Sections {
		if len(s.Filter)+1 > len(out) {
			out = "-" + s.Filter
		}
	}
	return out
}

func sectionNames() string {
	out := ""
	for i, s := range Sections {
		if i > 0 {
			out += ", "
		}
		out += s.Field
	}
	return out
}

// String is "namespace/name" (or "name").
func (p *TrafficPolicy) String() string {
	if p.Namespace == "" {
		return fmt.Sprintf("%s %s", Kind, p.Name)
	}
	return fmt.Sprintf("%s %s/%s", Kind, p.Namespace, p.Name)
}
