package engine

import (
	"github.com/cespare/xxhash/v2"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

// Metric names (counters), as the filter defines them with proxy_define_metric; Envoy
// shows them as wasmcustom.<name>. Rule and target names are DNS labels, so they never
// contain the '.' that separates stat name elements.
const (
	MetricRulePrefix       = "meshplug.routehint.rule."   // + rule + MetricRuleMatched
	MetricRuleMatched      = ".matched"                   // a request the rule acted on
	MetricTargetPrefix     = "meshplug.routehint.target." // + target + MetricTargetChosen
	MetricTargetChosen     = ".chosen"                    // a request that got the target (by a rule or the override)
	MetricNoMatch          = "meshplug.routehint.no_match"
	MetricOverrideAccepted = "meshplug.routehint.override.accepted"
	MetricOverrideRejected = "meshplug.routehint.override.rejected"
	MetricSpoofedRemoved   = "meshplug.routehint.spoofed_removed" // requests that arrived with a hint header
	MetricKeyMissing       = "meshplug.routehint.key_missing"     // sticky splits decided without a key
)

// Bucket is where a sticky key lands: XXH64 (seed 0) of salt, a zero byte and key,
// modulo config.Buckets. It is the same on every platform, proxy, worker and restart.
func Bucket(salt, key string) uint32 {
	d := xxhash.New()
	_, _ = d.WriteString(salt)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(key)
	return uint32(d.Sum64() % config.Buckets)
}

// Pick returns the target owning bucket b of split sp.
func Pick(sp *config.Split, b uint32) *config.Target {
	for i, bound := range sp.Bounds {
		if b < bound {
			return sp.Targets[i]
		}
	}
	return sp.Targets[len(sp.Targets)-1] // unreachable: the last bound is config.Buckets
}

// Engine decides requests for one compiled config.
type Engine struct {
	cfg *config.Config
	// salted holds, per rule index, the hash state after "salt\x00" for sticky splits,
	// so a request hashes only its key.
	salted []*xxhash.Digest
	// Rand returns uniformly distributed bits, for random splits. The glue sets it to
	// math/rand/v2; tests set it to something reproducible.
	Rand func() uint64
}

// New prepares an engine for cfg.
func New(cfg *config.Config, rnd func() uint64) *Engine {
	e := &Engine{cfg: cfg, Rand: rnd, salted: make([]*xxhash.Digest, len(cfg.Rules))}
	for i, r := range cfg.Rules {
		if r.Split != nil && !r.Split.Random {
			d := xxhash.New()
			_, _ = d.WriteString(r.Split.Salt)
			_, _ = d.Write([]byte{0})
			e.salted[i] = d
		}
	}
	return e
}

// Config returns the engine's config.
func (e *Engine) Config() *config.Config { return e.cfg }

// OverrideOutcome says what became of a request's override.
type OverrideOutcome uint8

// Override outcomes.
const (
	OverrideNone     OverrideOutcome = iota // no override header or cookie
	OverrideAccepted                        // an allowed target was forced
	OverrideRejected                        // present but not allowed (value, condition or repeated); ignored
)

// Applied is one target given to the request.
type Applied struct {
	Rule   *config.Rule // nil when the override forced the target
	Target *config.Target
}

// Verdict is the decision for one request. Its slices are reused from one Decide to
// the next.
type Verdict struct {
	Applied  []Applied // in order
	Override OverrideOutcome
	// KeyMissing counts the sticky splits decided without a usable key.
	KeyMissing int
	// Headers are the hint headers to set on the request (replacing any value), one
	// per name: with mode "all" a later rule's value wins.
	Headers []config.Header
}

// Decide picks the request's targets: the override when it is present and allowed,
// else the rules in order (the first that matches, or every one that matches with mode
// "all").
func (e *Engine) Decide(r *Request, v *Verdict) {
	v.Applied, v.Headers, v.Override, v.KeyMissing = v.Applied[:0], v.Headers[:0], OverrideNone, 0
	if ov := e.cfg.Override; ov != nil {
		if name, present := overrideValue(ov, r); present {
			t := ov.Allowed[name]
			if t != nil && r.Matches(&ov.When) {
				v.Override = OverrideAccepted
				v.apply(nil, t)
				return
			}
			v.Override = OverrideRejected
		}
	}
	for _, rule := range e.cfg.Rules {
		if !r.Matches(&rule.Match) {
			continue
		}
		t := rule.Target
		if rule.Split != nil {
			t = e.split(rule, r, v)
		}
		v.apply(rule, t)
		if e.cfg.Mode == config.ModeFirst {
			return
		}
	}
}

func (v *Verdict) apply(rule *config.Rule, t *config.Target) {
	v.Applied = append(v.Applied, Applied{Rule: rule, Target: t})
next:
	for _, h := range t.Headers {
		for i := range v.Headers {
			if v.Headers[i].Name == h.Name {
				v.Headers[i].Value = h.Value
				continue next
			}
		}
		v.Headers = append(v.Headers, h)
	}
}

func (e *Engine) split(rule *config.Rule, r *Request, v *Verdict) *config.Target {
	sp := rule.Split
	if sp.Random {
		return Pick(sp, uint32(e.Rand()%config.Buckets))
	}
	key, ok := r.key(sp)
	if !ok {
		v.KeyMissing++
		if sp.OnMissingKey != nil {
			return sp.OnMissingKey
		}
		return Pick(sp, uint32(e.Rand()%config.Buckets))
	}
	d := *e.salted[rule.Index] // a copy: the salted state is shared
	_, _ = d.WriteString(key)
	return Pick(sp, uint32(d.Sum64()%config.Buckets))
}

// key returns the split's key: present exactly once, not empty, and read the same by
// every common upstream parser (httpreq's rule; a repeated key could otherwise choose
// between two buckets).
func (r *Request) key(sp *config.Split) (string, bool) {
	switch sp.Key {
	case config.FromHeader:
		v := r.r.Header(sp.KeyName)
		return v.S, v.OK()
	case config.FromCookie:
		v := r.r.Cookie(sp.KeyName)
		return v.S, v.OK()
	case config.FromQuery:
		v := r.r.Param(sp.KeyName)
		return v.S, v.OK()
	case config.FromClientAddress:
		return r.ClientAddress, r.ClientAddress != ""
	}
	return "", false
}

// overrideValue returns the override's value: the header when present, else the
// cookie. Several copies that differ make it unusable ("", true: rejected); an empty
// value is absent.
func overrideValue(ov *config.Override, r *Request) (string, bool) {
	if ov.Header != "" {
		if v, n := same(r.Headers, ov.Header); n > 0 {
			return v, true
		}
	}
	if ov.Cookie != "" {
		vals, ambiguous := r.CookieValues(ov.Cookie)
		if ambiguous {
			return "", true
		}
		if v, n := sameValues(vals); n > 0 {
			return v, true
		}
	}
	return "", false
}

// same returns the value shared by every copy of name and the number of copies; ""
// when copies differ.
func same(pairs []abi.Pair, name string) (string, int) {
	value, n := "", 0
	for i := range pairs {
		if pairs[i].Key != name {
			continue
		}
		if n > 0 && pairs[i].Value != value {
			return "", n + 1
		}
		value = pairs[i].Value
		n++
	}
	if n > 0 && value == "" {
		return "", 0 // an empty override is no override
	}
	return value, n
}

// sameValues is same over a list of values.
func sameValues(vals []string) (string, int) {
	for i := 1; i < len(vals); i++ {
		if vals[i] != vals[0] {
			return "", i + 1
		}
	}
	if len(vals) == 0 || vals[0] == "" {
		return "", 0
	}
	return vals[0], len(vals)
}
