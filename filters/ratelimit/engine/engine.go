package engine

import (
	"encoding/binary"
	"strings"

	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Event is what a rule did with a request, for metrics.
type Event uint8

const (
	EventAllowed       Event = iota // the rule's bucket had a token (or the key is unlimited, or missing and allowed)
	EventLimited                    // the rule rejected the request (empty bucket, or missing key with "deny")
	EventShadowLimited              // the rule would have rejected it, but is in shadow mode
)

// RuleEvent is one applied rule's event.
type RuleEvent struct {
	Rule  *config.Rule
	Event Event
}

// Verdict is the engine's answer for one request. The glue reuses one per stream.
type Verdict struct {
	// Limited: reject the request with Status.
	Limited bool
	// Report is the applied limit reported in the rate limit headers: the rejecting
	// one, else the one with the fewest remaining requests; nil when no bucket was
	// consulted.
	Report  *config.Limit
	Outcome bucket.Outcome
	// Events lists the applied rules, in order.
	Events []RuleEvent
	// Table effects: CAS retries, buckets added and removed, active buckets evicted.
	Retries, Added, Removed, Evicted int
	// Err is a shared-data failure; the rule that hit it let the request pass (fail
	// open) and the glue logs it.
	Err error
	// MissingKey: the request is limited because a "deny" rule found no value.
	MissingKey bool
	// ServiceError: the request is limited because the rate limit service did not
	// answer (global mode with failure_mode_deny).
	ServiceError bool
}

// Table is the bucket store the engine takes tokens from (a *bucket.Table).
type Table interface {
	Take(key []byte, l *config.Limit, now int64) (bucket.Result, error)
}

// Engine decides requests for one configuration in one VM. Not safe for concurrent
// use (a VM runs one callback at a time).
type Engine struct {
	cfg   *config.Config
	table Table
	key   []byte
}

// New returns an engine for cfg taking tokens from table.
func New(cfg *config.Config, table Table) *Engine { return &Engine{cfg: cfg, table: table} }

// Config is the engine's configuration.
func (e *Engine) Config() *config.Config { return e.cfg }

// Decide applies every matching rule to r at now (ns since the epoch) and fills v.
// Rules are applied in order and all of them take their token, like Envoy's rate limit
// descriptors; tokens taken by an earlier rule are not returned when a later one
// rejects.
func (e *Engine) Decide(r *Request, now int64, v *Verdict) {
	*v = Verdict{Events: v.Events[:0]}
	for _, rule := range e.cfg.Rules {
		if !matches(&rule.Match, r) {
			continue
		}
		ev := e.apply(rule, r, now, v)
		if ev == EventLimited && rule.Shadow {
			ev = EventShadowLimited
		}
		if ev == EventLimited {
			v.Limited = true
		}
		v.Events = append(v.Events, RuleEvent{rule, ev})
	}
}

func (e *Engine) apply(rule *config.Rule, r *Request, now int64, v *Verdict) Event {
	key := append(e.key[:0], rule.Name...)
	key = append(key, 0)
	missing := false
	for i := range rule.Entries {
		val := entryValue(&rule.Entries[i], r)
		if !val.ok {
			missing = true
			key = append(key, 0)
			continue
		}
		key = append(key, 1)
		key = binary.AppendUvarint(key, uint64(len(val.s)))
		key = append(key, val.s...)
	}
	e.key = key
	limit := &rule.Limit
	if missing {
		switch rule.MissingKey {
		case config.MissingAllow:
			return EventAllowed
		case config.MissingDeny:
			if !v.Limited && !rule.Shadow {
				v.Report, v.Outcome, v.MissingKey = nil, bucket.Outcome{}, true
			}
			return EventLimited
		}
		// MissingAnonymous: the key above, with its absent markers, is the shared
		// anonymous bucket; overrides do not apply.
	} else {
		for i := range rule.Overrides {
			o := &rule.Overrides[i]
			if overrideMatches(o, rule, r) {
				if o.Unlimited {
					return EventAllowed
				}
				limit = o.Limit
				break
			}
		}
	}
	key = append(key, 0)
	key = append(key, limit.ID...)
	e.key = key
	res, err := e.table.Take(key, limit, now)
	v.Retries += res.Retries
	v.Added += res.Added
	v.Removed += res.Removed
	v.Evicted += res.Evicted
	if err != nil {
		if v.Err == nil {
			v.Err = err
		}
		return EventAllowed
	}
	ev := EventAllowed
	if !res.Allowed {
		ev = EventLimited
	}
	// Report the binding limit: an enforced rejection first, then the fewest remaining.
	enforcedReject := ev == EventLimited && !rule.Shadow
	switch {
	case v.Limited:
	case enforcedReject:
		v.Report, v.Outcome = limit, res.Outcome
	case v.Report == nil || res.Remaining < v.Outcome.Remaining:
		if ev == EventAllowed {
			v.Report, v.Outcome = limit, res.Outcome
		}
	}
	return ev
}

func entryValue(en *config.Entry, r *Request) value {
	switch en.Source {
	case config.SourceHeader:
		return r.headers[en.Slot]
	case config.SourceCookie:
		return r.cookies[en.Slot]
	case config.SourceQueryParam:
		return r.params[en.Slot]
	case config.SourceClientAddress:
		return r.clientIP
	case config.SourcePath:
		return value{r.Path, r.Path != ""}
	case config.SourceMethod:
		return value{r.Method, r.Method != ""}
	case config.SourceValue:
		return value{en.Value, true}
	}
	return value{}
}

func overrideMatches(o *config.Override, rule *config.Rule, r *Request) bool {
	for _, vm := range o.Values {
		val := entryValue(&rule.Entries[vm.Entry], r)
		if !val.ok {
			return false
		}
		if vm.Prefix {
			if !strings.HasPrefix(val.s, vm.Value) {
				return false
			}
		} else if val.s != vm.Value {
			return false
		}
	}
	return true
}

func matches(m *config.Match, r *Request) bool {
	if (m.Path != "" || m.Prefix != "" || m.Regex != nil) && !pathMatches(m, r) {
		return false
	}
	if len(m.Methods) > 0 {
		found := false
		for _, meth := range m.Methods {
			if meth == r.Method {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for i := range m.Headers {
		h := &m.Headers[i]
		val := r.headers[h.Slot]
		var ok bool
		switch h.Kind {
		case config.HeaderExact:
			ok = val.ok && val.s == h.Exact
		case config.HeaderPrefix:
			ok = val.ok && strings.HasPrefix(val.s, h.Prefix)
		case config.HeaderPresent:
			ok = val.ok
		case config.HeaderAbsent:
			ok = !val.ok
		}
		if ok == h.Invert {
			return false
		}
	}
	return true
}

// pathMatches: the rule's path condition holds for one of the path's readings (a
// spelling read two ways by upstreams is limited under either reading).
func pathMatches(m *config.Match, r *Request) bool {
	paths := r.paths
	if len(paths) == 0 { // a Request not filled by Read (tests)
		paths = []string{r.Path}
	}
	for _, p := range paths {
		switch {
		case m.Path != "" && p != m.Path:
		case m.Prefix != "" && !strings.HasPrefix(p, m.Prefix):
		case m.Regex != nil && !m.Regex.MatchString(p):
		default:
			return true
		}
	}
	return false
}
