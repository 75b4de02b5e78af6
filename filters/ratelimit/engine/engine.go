package engine

import (
	"encoding/binary"
	"strings"
	"time"

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
	// one that frees up last, else the one with the fewest remaining requests; nil
	// when no bucket was consulted (or the request is refused for its key).
	Report *config.Limit
	// Outcome is Report's; when Limited by buckets, Outcome.RetryAfter is the time
	// until the request would pass every rule (the longest of the rejecting rules'
	// waits: a rejected request takes no token, so every other rule still has one).
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
	// Refused: the request is limited because a rule reads an input the request gives
	// twice or spells ambiguously (filters/httpreq's rule); Refused says which.
	Refused string
	// ServiceError: the request is limited because the rate limit service did not
	// answer (global mode with failure_mode_deny).
	ServiceError bool
}

// Table is the bucket store the engine takes tokens from (a *bucket.Table): Peek
// reads a bucket, Commit takes the request's tokens from it.
type Table interface {
	Peek(op *bucket.Op, key []byte, l *config.Limit, now int64) (bucket.Outcome, error)
	Commit(op *bucket.Op) (bucket.Result, error)
}

// Engine decides requests for one configuration in one VM. Not safe for concurrent
// use (a VM runs one callback at a time).
type Engine struct {
	cfg   *config.Config
	table Table
	key   []byte
	ops   []bucket.Op // by rule index
	pend  []pending
}

// pending is a rule whose bucket had tokens when peeked: Decide takes them once no
// rule rejects the request.
type pending struct {
	rule  *config.Rule
	limit *config.Limit
	event int // index in Verdict.Events
}

// New returns an engine for cfg taking tokens from table.
func New(cfg *config.Config, table Table) *Engine {
	return &Engine{cfg: cfg, table: table, ops: make([]bucket.Op, len(cfg.Rules))}
}

// Config is the engine's configuration.
func (e *Engine) Config() *config.Config { return e.cfg }

// Decide applies every matching rule to r at now (ns since the epoch) and fills v, in
// two steps: every rule's bucket is read (Table.Peek); when no enforced rule rejects
// the request, every rule with tokens takes them (Table.Commit). So a rejected request
// takes no token anywhere: its retry after Retry-After passes every rule, and a
// limited client cannot drain other buckets or fill the table with new ones. (A VM
// that loses a race for the last token between the two steps rejects the request
// after earlier rules took theirs.)
func (e *Engine) Decide(r *Request, now int64, v *Verdict) {
	*v = Verdict{Events: v.Events[:0]}
	e.pend = e.pend[:0]
	var retry time.Duration
	for _, rule := range e.cfg.Rules {
		ok, why := true, ""
		if !rule.Match.Empty() {
			ok, why = matches(&rule.Match, r)
		}
		if !ok && why == "" {
			continue
		}
		ev := EventAllowed
		if why != "" {
			ev = e.refuse(rule, why, v)
		} else {
			ev = e.peek(rule, r, now, v, &retry)
		}
		if ev == EventLimited && rule.Shadow {
			ev = EventShadowLimited
		}
		if ev == EventLimited {
			v.Limited = true
		}
		v.Events = append(v.Events, RuleEvent{rule, ev})
	}
	if v.Limited {
		if v.Report != nil {
			v.Outcome.RetryAfter = retry
		}
		return
	}
	for _, p := range e.pend {
		res, err := e.table.Commit(&e.ops[p.rule.Index])
		v.Retries += res.Retries
		v.Added += res.Added
		v.Removed += res.Removed
		v.Evicted += res.Evicted
		if err != nil {
			if v.Err == nil {
				v.Err = err
			}
			continue
		}
		if !res.Allowed { // lost the last token to another VM since the peek
			if p.rule.Shadow {
				v.Events[p.event].Event = EventShadowLimited
				continue
			}
			v.Events[p.event].Event = EventLimited
			if !v.Limited {
				v.Limited, v.Report, v.Outcome = true, p.limit, res.Outcome
			}
			continue
		}
		if !v.Limited && (v.Report == nil || res.Remaining < v.Outcome.Remaining) {
			v.Report, v.Outcome = p.limit, res.Outcome
		}
	}
}

// refuse applies a rule that reads a refused input.
func (e *Engine) refuse(rule *config.Rule, why string, v *Verdict) Event {
	if !rule.Shadow && v.Refused == "" && !v.MissingKey {
		v.Report, v.Outcome, v.Refused = nil, bucket.Outcome{}, why
	}
	return EventLimited
}

// peek builds rule's key, applies missing_key and overrides, and reads the bucket:
// a rule with tokens is queued for Decide's second step; an enforced rejection
// becomes the reported one when it frees up last (retry is the longest wait).
func (e *Engine) peek(rule *config.Rule, r *Request, now int64, v *Verdict, retry *time.Duration) Event {
	key := append(e.key[:0], rule.Name...)
	key = append(key, 0)
	missing := false
	for i := range rule.Entries {
		val := entryValue(&rule.Entries[i], r)
		if val.refused {
			e.key = key
			return e.refuse(rule, val.why, v)
		}
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
			if !rule.Shadow && v.Refused == "" && !v.MissingKey {
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
	o, err := e.table.Peek(&e.ops[rule.Index], key, limit, now)
	if err != nil {
		if v.Err == nil {
			v.Err = err
		}
		return EventAllowed
	}
	if o.Allowed {
		e.pend = append(e.pend, pending{rule: rule, limit: limit, event: len(v.Events)})
		return EventAllowed
	}
	if !rule.Shadow && v.Refused == "" && !v.MissingKey && o.RetryAfter >= *retry {
		*retry = o.RetryAfter
		v.Report, v.Outcome = limit, o
	}
	return EventLimited
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
		return value{s: r.Path, ok: r.Path != ""}
	case config.SourceMethod:
		return value{s: r.Method, ok: r.Method != ""}
	case config.SourceValue:
		return value{s: en.Value, ok: true}
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

// matches reports whether m holds for r; why is not empty when a header m compares
// is refused (given twice for a value comparison, or spelled ambiguously): the rule
// then refuses the request.
func matches(m *config.Match, r *Request) (ok bool, why string) {
	if (m.Path != "" || m.Prefix != "" || m.Regex != nil) && !pathMatches(m, r) {
		return false, ""
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
			return false, ""
		}
	}
	for i := range m.Headers {
		h := &m.Headers[i]
		val := r.headers[h.Slot]
		if val.refused && (!val.repeated || h.Kind == config.HeaderExact || h.Kind == config.HeaderPrefix) {
			return false, val.why
		}
		var ok bool
		switch h.Kind {
		case config.HeaderExact:
			ok = val.ok && val.s == h.Exact
		case config.HeaderPrefix:
			ok = val.ok && strings.HasPrefix(val.s, h.Prefix)
		case config.HeaderPresent:
			ok = val.ok || val.refused
		case config.HeaderAbsent:
			ok = !val.ok && !val.refused
		}
		if ok == h.Invert {
			return false, ""
		}
	}
	return true, ""
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
