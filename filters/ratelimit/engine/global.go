package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/rls"
)

// Global mode: the rules' descriptors go to a rate limit service
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) that keeps the counters
// for every proxy, as Envoy's ratelimit HTTP filter (envoy.filters.http.ratelimit) does
// with its rate_limit_service. The engine builds the descriptors (Descriptors), and
// reads the service's answer (DecideGlobal) or its absence (DecideFailure); the glue
// makes the call.
//
// See https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rate_limit_filter

// Descriptors is one request's descriptors for the service: one per applied rule,
// each starting with (config.RuleKey, rule name) followed by the rule's entries.
// Reused per stream.
type Descriptors struct {
	// Rules[i] is the rule of Entries[i].
	Rules   []*config.Rule
	Entries [][]rls.Entry
	backing []rls.Entry
	// limit is the reported limit when the service's differs from the rule's own.
	limit config.Limit
}

// Descriptors builds d from the rules that match r, and starts v: a rule whose entry
// has no value in the request is applied here, by its missing_key ("allow": no
// descriptor, like Envoy skips a descriptor whose header is absent; "deny": the request
// is limited without calling the service). When v.Limited is set or d is empty, there
// is nothing to ask the service.
func (e *Engine) Descriptors(r *Request, d *Descriptors, v *Verdict) {
	*v = Verdict{Events: v.Events[:0]}
	d.Rules, d.Entries, d.backing = d.Rules[:0], d.Entries[:0], d.backing[:0]
	// Fill backing first, then slice it: appending may move it.
	type span struct{ from, to int }
	var spans [8]span
	sp := spans[:0]
	for _, rule := range e.cfg.Rules {
		ok, why := matches(&rule.Match, r)
		if !ok && why == "" {
			continue
		}
		from := len(d.backing)
		d.backing = append(d.backing, rls.Entry{Key: config.RuleKey, Value: rule.Name})
		missing := false
		for i := range rule.Entries {
			if why != "" {
				break
			}
			val := entryValue(&rule.Entries[i], r)
			if val.refused {
				why = val.why
				break
			}
			if !val.ok {
				missing = true
				break
			}
			d.backing = append(d.backing, rls.Entry{Key: rule.Entries[i].Key, Value: val.s})
		}
		if why != "" {
			// An input read twice or ambiguously: refused without asking the service.
			d.backing = d.backing[:from]
			ev := e.refuse(rule, why, v)
			if rule.Shadow {
				ev = EventShadowLimited
			} else {
				v.Limited = true
			}
			v.Events = append(v.Events, RuleEvent{rule, ev})
			continue
		}
		if missing {
			d.backing = d.backing[:from]
			ev := EventAllowed
			if rule.MissingKey == config.MissingDeny {
				ev = EventLimited
				if rule.Shadow {
					ev = EventShadowLimited
				} else {
					v.Limited, v.MissingKey = true, v.Refused == ""
				}
			}
			v.Events = append(v.Events, RuleEvent{rule, ev})
			continue
		}
		d.Rules = append(d.Rules, rule)
		sp = append(sp, span{from, len(d.backing)})
	}
	for _, s := range sp {
		d.Entries = append(d.Entries, d.backing[s.from:s.to])
	}
}

// DecideGlobal completes v from the service's response to d, as Envoy's ratelimit
// filter does (Filter::complete): the request is limited when overall_code is
// OVER_LIMIT (any other code, UNKNOWN included, allows it, as Envoy's
// GrpcClientImpl::onSuccess in source/extensions/filters/common/ratelimit maps only
// OVER_LIMIT to LimitStatus::OverLimit), except that a descriptor of a shadow rule
// never limits. Per-descriptor statuses say which rules were over their limit (for
// metrics and shadow mode) and give the rate limit headers: on a rejection, the
// over-limit status with the longest duration_until_reset (Retry-After: when every
// limit that rejected the request has reset); otherwise the status with the fewest
// limit_remaining (as Envoy's XRateLimitHeaderUtils picks the minimum).
//
// A response with statuses, but not one per descriptor, is malformed: the error is
// returned and the caller applies the failure mode. A response without statuses
// (Limitador's, for one) is judged by overall_code alone: every rule counts as over its
// limit when it is OVER_LIMIT.
func (e *Engine) DecideGlobal(d *Descriptors, resp *rls.Response, v *Verdict) error {
	if len(resp.Statuses) != 0 && len(resp.Statuses) != len(d.Rules) {
		return errStatusCount
	}
	over := resp.OverallCode == rls.CodeOverLimit
	if len(resp.Statuses) == 0 {
		for _, rule := range d.Rules {
			ev := EventAllowed
			if over {
				ev = EventLimited
				if rule.Shadow {
					ev = EventShadowLimited
				} else {
					v.Limited = true
				}
			}
			v.Events = append(v.Events, RuleEvent{rule, ev})
		}
		return nil
	}
	report := -1
	for i, rule := range d.Rules {
		st := &resp.Statuses[i]
		ev := EventAllowed
		if st.Code == rls.CodeOverLimit && over {
			ev = EventLimited
			if rule.Shadow {
				ev = EventShadowLimited
			}
		}
		v.Events = append(v.Events, RuleEvent{rule, ev})
		if !st.HasLimit {
			continue
		}
		enforced := ev == EventLimited
		switch {
		case enforced && !v.Limited:
			v.Limited, report = true, i
		case enforced:
			if st.DurationUntilReset > resp.Statuses[report].DurationUntilReset {
				report = i
			}
		case v.Limited:
		case report < 0 || st.LimitRemaining < resp.Statuses[report].LimitRemaining:
			report = i
		}
	}
	if !v.Limited {
		// OVER_LIMIT without an enforced over-limit status that carries a limit.
		for _, ev := range v.Events {
			if ev.Event == EventLimited {
				v.Limited = true
			}
		}
	}
	if report >= 0 {
		st := &resp.Statuses[report]
		v.Report = d.reportLimit(d.Rules[report], st)
		v.Outcome = bucket.Outcome{Allowed: !v.Limited, Remaining: int64(st.LimitRemaining), Reset: st.DurationUntilReset}
		if v.Limited {
			v.Outcome.RetryAfter = st.DurationUntilReset
		}
	}
	return nil
}

// DecideFailure completes v when the service did not answer (unreachable, timeout, an
// error status, a malformed reply): with failure_mode_deny the request is rejected with
// status_on_error, otherwise it passes (Envoy's failure_mode_deny: false default). The
// rules' events are not recorded: nothing was decided for them.
func (e *Engine) DecideFailure(v *Verdict) {
	if e.cfg.Global.FailureModeDeny {
		v.Limited, v.ServiceError, v.Report = true, true, nil
	}
}

type engineError string

func (e engineError) Error() string { return string(e) }

const errStatusCount = engineError("rate limit service: the response's statuses do not match the request's descriptors")

// reportLimit is the limit a status reports: the rule's own when the service applied
// that limit, else one built from the status (an override in the service's config).
func (d *Descriptors) reportLimit(rule *config.Rule, st *rls.Status) *config.Limit {
	w := st.Unit.Seconds()
	if int64(st.RequestsPerUnit) == rule.Limit.Requests && time.Duration(w)*time.Second == rule.Limit.Period {
		return &rule.Limit
	}
	n := strconv.FormatUint(uint64(st.RequestsPerUnit), 10)
	d.limit = config.Limit{Requests: int64(st.RequestsPerUnit), Burst: int64(st.RequestsPerUnit), Period: time.Duration(w) * time.Second, Header: n}
	if w > 0 {
		d.limit.Header = n + ", " + n + ";w=" + strconv.FormatInt(w, 10)
	}
	return &d.limit
}

// AppendServiceHeaders appends the headers of the service's response_headers_to_add or
// request_headers_to_add to dst, dropping what must not come from it: pseudo-headers,
// names that are not RFC 9110 tokens, values with CR, LF or NUL (the
// proxy would refuse or, worse, split them), and hop-by-hop and framing headers. Names
// are lower-cased (HTTP/2's form, as Envoy keeps them).
func AppendServiceHeaders(dst []abi.Pair, hs []rls.Header) []abi.Pair {
	for _, h := range hs {
		key := h.Key
		if strings.ContainsFunc(key, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
			key = strings.ToLower(key)
		}
		if !headerNameOK(key) || !headerValueOK(h.Value) {
			continue
		}
		switch key {
		case "host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "keep-alive", "proxy-connection":
			continue
		}
		dst = append(dst, abi.Pair{Key: key, Value: h.Value})
	}
	return dst
}

func headerNameOK(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' ||
			c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}

func headerValueOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
