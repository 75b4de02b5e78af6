package envoyfilters

import (
	"bytes"
	"fmt"

	yaml "go.yaml.in/yaml/v3"

	"github.com/meshplug/meshplug/api/v1alpha1"
	ratelimitconfig "github.com/meshplug/meshplug/filters/ratelimit/config"
)

// RateLimitServiceConfig is envoyproxy/ratelimit's configuration of one domain (one
// file in its runtime config directory): a tree of descriptors whose leaves carry the
// limits.
//
// See https://github.com/envoyproxy/ratelimit#configuration.
type RateLimitServiceConfig struct {
	Domain      string                       `json:"domain" yaml:"domain"`
	Descriptors []RateLimitServiceDescriptor `json:"descriptors" yaml:"descriptors"`
}

// RateLimitServiceDescriptor is one node of the tree: a key, optionally a value
// ("prefix*" is the service's wildcard), the limit of the descriptors that end here,
// and the nodes of the next entry.
type RateLimitServiceDescriptor struct {
	Key         string                       `json:"key" yaml:"key"`
	Value       string                       `json:"value,omitempty" yaml:"value,omitempty"`
	RateLimit   *RateLimitServiceLimit       `json:"rate_limit,omitempty" yaml:"rate_limit,omitempty"`
	Descriptors []RateLimitServiceDescriptor `json:"descriptors,omitempty" yaml:"descriptors,omitempty"`
}

// RateLimitServiceLimit is a leaf's limit: requests_per_unit per unit window, or
// unlimited.
type RateLimitServiceLimit struct {
	Unit            string `json:"unit,omitempty" yaml:"unit,omitempty"`
	RequestsPerUnit int64  `json:"requests_per_unit,omitempty" yaml:"requests_per_unit,omitempty"`
	Unlimited       bool   `json:"unlimited,omitempty" yaml:"unlimited,omitempty"`
}

// RateLimitService renders the rate limit service's configuration of p's rateLimit
// section, which must be in the global mode: the descriptors the filter sends, with
// their limits.
//
// Each rule is a branch under (generic_key, rule name), the entry the filter puts first
// (ratelimitconfig.RuleKey); below it one level per descriptor entry, key only for the
// rule's limit; each override adds the path of its values (an exact value, "prefix*"
// for a prefix, key only for "*") with its limit or `unlimited: true`. Overrides come
// first and an earlier one keeps a path a later one repeats. The service matches a
// level's exact value before its wildcards and its key alone, entry by entry, so when
// two overrides match one request it applies the one more specific in the earlier
// entry, where the filter's local mode would take the first listed.
func RateLimitService(p *v1alpha1.TrafficPolicy) (*RateLimitServiceConfig, error) {
	if p.Spec.RateLimit == nil {
		return nil, fmt.Errorf("%s: no rateLimit section", p)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	c, err := RateLimitServiceFromSpec(p.Spec.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("%s: spec.rateLimit: %w", p, err)
	}
	return c, nil
}

// RateLimitServiceFromSpec is RateLimitService for a ratelimit filter configuration.
func RateLimitServiceFromSpec(s *ratelimitconfig.Spec) (*RateLimitServiceConfig, error) {
	cfg, err := ratelimitconfig.Compile(s)
	if err != nil {
		return nil, err
	}
	if cfg.Global == nil {
		return nil, fmt.Errorf("mode: the rate limit service's configuration is for mode \"global\"")
	}
	out := &RateLimitServiceConfig{Domain: cfg.Domain}
	for _, r := range cfg.Rules {
		root := RateLimitServiceDescriptor{Key: ratelimitconfig.RuleKey, Value: r.Name}
		path := make([]RateLimitServiceDescriptor, len(r.Entries))
		for _, o := range r.Overrides {
			for i, e := range r.Entries {
				path[i] = RateLimitServiceDescriptor{Key: e.Key}
			}
			for _, vm := range o.Values {
				v := vm.Value
				if vm.Prefix {
					v += "*"
				}
				if v == "*" { // any present value: the key alone
					v = ""
				}
				path[vm.Entry].Value = v
			}
			limit := &RateLimitServiceLimit{Unlimited: true}
			if !o.Unlimited {
				limit = serviceLimit(o.Limit)
			}
			insert(&root, path, limit)
		}
		for i, e := range r.Entries {
			path[i] = RateLimitServiceDescriptor{Key: e.Key}
		}
		insert(&root, path, serviceLimit(&r.Limit))
		out.Descriptors = append(out.Descriptors, root)
	}
	return out, nil
}

func serviceLimit(l *ratelimitconfig.Limit) *RateLimitServiceLimit {
	return &RateLimitServiceLimit{Unit: l.Unit, RequestsPerUnit: l.Requests}
}

// insert adds path below n, setting the leaf's limit unless it has one.
func insert(n *RateLimitServiceDescriptor, path []RateLimitServiceDescriptor, limit *RateLimitServiceLimit) {
	for _, step := range path {
		found := -1
		for i := range n.Descriptors {
			if n.Descriptors[i].Key == step.Key && n.Descriptors[i].Value == step.Value {
				found = i
				break
			}
		}
		if found < 0 {
			n.Descriptors = append(n.Descriptors, RateLimitServiceDescriptor{Key: step.Key, Value: step.Value})
			found = len(n.Descriptors) - 1
		}
		n = &n.Descriptors[found]
	}
	if n.RateLimit == nil {
		n.RateLimit = limit
	}
}

// MarshalRateLimitService writes c as the service's YAML file (fields in the order of
// the service's documentation: key, value, rate_limit, descriptors).
func MarshalRateLimitService(c *RateLimitServiceConfig) ([]byte, error) {
	var b bytes.Buffer
	e := yaml.NewEncoder(&b)
	e.SetIndent(2)
	if err := e.Encode(c); err != nil {
		return nil, err
	}
	if err := e.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
