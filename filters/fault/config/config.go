package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// Denominators of a FractionalPercent.
const (
	Hundred     = 100
	TenThousand = 10_000
	Million     = 1_000_000
)

// Header names of header-controlled faults (Envoy's HeaderNames in
// source/extensions/filters/common/fault/fault_config.h, with the default "x-envoy"
// prefix). They are honoured only by rules with delay.header_delay or
// abort.header_abort.
const (
	HeaderAbortRequest           = "x-envoy-fault-abort-request"
	HeaderAbortRequestPercentage = "x-envoy-fault-abort-request-percentage"
	HeaderAbortGrpcRequest       = "x-envoy-fault-abort-grpc-request"
	HeaderDelayRequest           = "x-envoy-fault-delay-request"
	HeaderDelayRequestPercentage = "x-envoy-fault-delay-request-percentage"
	// HeaderDownstreamNode is matched against downstream_nodes.
	HeaderDownstreamNode = "x-envoy-downstream-service-node"
)

// NoLimit is Rule.MaxActive when no cap applies.
const NoLimit = ^uint64(0)

// Config is the compiled configuration. It is immutable after Compile.
type Config struct {
	Rules []*Rule
	// Capped: some rule has a max_active_faults, so every injected fault is counted in
	// the proxy-wide shared counter (faults of uncapped rules count against the caps
	// of the others, as in Envoy where all faults share one gauge).
	Capped bool
	// Seed is the fixed random seed, if HasSeed.
	Seed    uint64
	HasSeed bool
	// HeaderNames is every header any rule reads (lower-case, unique), so the glue
	// can read just those.
	HeaderNames []string
}

// Percent is a FractionalPercent: Numerator out of Denominator (100, 10 000 or
// 1 000 000), Numerator <= Denominator.
type Percent struct {
	Numerator, Denominator uint32
}

// Rule is one compiled fault rule.
type Rule struct {
	Index int
	Name  string

	UpstreamCluster string
	RouteName       string
	Headers         []HeaderMatcher
	DownstreamNodes map[string]bool // nil: any

	Delay *Delay
	Abort *Abort
	// MaxActive is the cap on concurrently active faults (NoLimit: none).
	MaxActive uint64
}

// Delay is a compiled delay fault.
type Delay struct {
	Percentage Percent
	// Fixed is the delay when FromHeader is false.
	Fixed time.Duration
	// FromHeader: the delay comes from x-envoy-fault-delay-request (milliseconds),
	// capped at MaxDelay when MaxDelay > 0.
	FromHeader bool
	MaxDelay   time.Duration
}

// Abort is a compiled abort fault.
type Abort struct {
	Percentage Percent
	// HTTPStatus (200–599) or, when HTTPStatus is 0 and !FromHeader, GRPCStatus.
	HTTPStatus uint32
	GRPCStatus uint32
	FromHeader bool
	Body       []byte
	Headers    [][2]string // lower-case names
}

// MatchKind is how a header matcher compares.
type MatchKind uint8

// Header matcher kinds.
const (
	MatchExact MatchKind = iota
	MatchPrefix
	MatchSuffix
	MatchContains
	MatchRegex
	MatchPresent
)

// HeaderMatcher is a compiled Envoy HeaderMatcher.
type HeaderMatcher struct {
	Name       string // lower-case
	Kind       MatchKind
	Value      string // lower-case when IgnoreCase
	IgnoreCase bool
	Regex      *regexp.Regexp
	Present    bool // for MatchPresent: true = must be present
	Invert     bool
	// Path, for a matcher on :path, is how its path part is read (canonical form,
	// every reading of an ambiguous path; path_normalization). nil for other headers.
	Path *httpreq.PathOptions
}

// DefaultAbortBody is the reply body when abort.body is absent.
const DefaultAbortBody = `{"error":"fault_filter_abort","message":"fault filter abort"}`

// Parse decodes and compiles a configuration.
func Parse(data []byte) (*Config, error) {
	var s Spec
	if err := configjson.Unmarshal(data, &s); err != nil {
		var fe *configjson.FieldError
		if errors.As(err, &fe) && fe.Msg == "unknown field" && strings.HasSuffix(fe.Path, ".response_rate_limit") {
			return nil, configjson.Errorf(fe.Path, "%s", ErrResponseRateLimit)
		}
		return nil, err
	}
	return Compile(&s)
}

// ErrResponseRateLimit explains why Envoy's response_rate_limit is refused.
const ErrResponseRateLimit = "not supported: proxy-wasm cannot release part of a held response body, so a bandwidth limit cannot be kept faithfully (see the fault README)"

// Compile validates s and builds the runtime Config. Every problem is reported with
// its field path.
func Compile(s *Spec) (*Config, error) {
	var errs configjson.Errors
	c := &Config{}
	if s.RandomSeed != nil {
		if *s.RandomSeed < 0 {
			errs.Add("random_seed", "must be >= 0, got %d", *s.RandomSeed)
		}
		c.Seed, c.HasSeed = uint64(*s.RandomSeed), true
	}
	top := checkCap(s.MaxActiveFaults, "max_active_faults", &errs)
	if len(s.Faults) == 0 {
		errs.Add("faults", "at least one fault rule is required")
	}
	po := &httpreq.PathOptions{}
	if pn := s.PathNormalization; pn != nil {
		var err error
		if po.Params, err = httpreq.ParsePathParams(pn.PathParams); err != nil {
			errs.Add("path_normalization.path_params", "%v", err)
		}
	}
	names := map[string]bool{}
	addName := func(n string) {
		if !names[n] {
			names[n] = true
			c.HeaderNames = append(c.HeaderNames, n)
		}
	}
	for i := range s.Faults {
		f := &s.Faults[i]
		p := configjson.Index("faults", i)
		r := &Rule{Index: i, Name: f.Name, UpstreamCluster: f.UpstreamCluster, RouteName: f.RouteName, MaxActive: NoLimit}
		if r.Name == "" {
			r.Name = p
		}
		if f.Delay == nil && f.Abort == nil {
			errs.Add(p, "needs delay or abort (or both)")
		}
		if f.Delay != nil {
			r.Delay = compileDelay(f.Delay, configjson.Field(p, "delay"), &errs)
		}
		if f.Abort != nil {
			r.Abort = compileAbort(f.Abort, configjson.Field(p, "abort"), &errs)
		}
		for j := range f.Headers {
			m, err := compileHeader(&f.Headers[j])
			if err != nil {
				errs.AddErr(configjson.Index(configjson.Field(p, "headers"), j), err)
				continue
			}
			if m.Name == ":path" {
				m.Path = po
				if m.Kind == MatchExact || m.Kind == MatchPrefix {
					// Compared with the canonical path: another spelling never matches.
					pathPart, _, _ := strings.Cut(m.Value, "?")
					if _, err := httpreq.CanonicalRulePath(pathPart, httpreq.PathOptions{}); err != nil && pathPart != "" {
						errs.Add(configjson.Index(configjson.Field(p, "headers"), j), "%v", err)
					}
				}
			}
			r.Headers = append(r.Headers, m)
			addName(m.Name)
		}
		if len(f.DownstreamNodes) > 0 {
			r.DownstreamNodes = map[string]bool{}
			for _, n := range f.DownstreamNodes {
				r.DownstreamNodes[n] = true
			}
			addName(HeaderDownstreamNode)
		}
		if own := checkCap(f.MaxActiveFaults, configjson.Field(p, "max_active_faults"), &errs); own != NoLimit {
			r.MaxActive = own
		} else {
			r.MaxActive = top
		}
		if r.MaxActive != NoLimit {
			c.Capped = true
		}
		if r.Delay != nil && r.Delay.FromHeader {
			addName(HeaderDelayRequest)
			addName(HeaderDelayRequestPercentage)
		}
		if r.Abort != nil && r.Abort.FromHeader {
			addName(HeaderAbortRequest)
			addName(HeaderAbortGrpcRequest)
			addName(HeaderAbortRequestPercentage)
		}
		c.Rules = append(c.Rules, r)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// checkCap validates an optional max_active_faults (0..2^32-1, like Envoy's
// UInt32Value); NoLimit when absent.
func checkCap(v *int64, path string, errs *configjson.Errors) uint64 {
	if v == nil {
		return NoLimit
	}
	if *v < 0 || *v > 1<<32-1 {
		errs.Add(path, "must be 0–4294967295, got %d", *v)
		return NoLimit
	}
	return uint64(*v)
}

func compilePercent(p *FractionalPercentSpec, path string, errs *configjson.Errors) Percent {
	if p == nil {
		errs.Add(path, `required (e.g. {"numerator": 100} for 100%%; Envoy reads an absent percentage as 0%%)`)
		return Percent{}
	}
	var d uint32
	switch p.Denominator {
	case "", "HUNDRED":
		d = Hundred
	case "TEN_THOUSAND":
		d = TenThousand
	case "MILLION":
		d = Million
	default:
		errs.Add(configjson.Field(path, "denominator"), "must be HUNDRED, TEN_THOUSAND or MILLION, got %q", p.Denominator)
		return Percent{}
	}
	if p.Numerator < 0 || p.Numerator > int64(d) {
		errs.Add(configjson.Field(path, "numerator"), "must be 0–%d (the denominator), got %d", d, p.Numerator)
		return Percent{Denominator: d}
	}
	return Percent{Numerator: uint32(p.Numerator), Denominator: d}
}

func compileDelay(d *DelaySpec, path string, errs *configjson.Errors) *Delay {
	out := &Delay{Percentage: compilePercent(d.Percentage, configjson.Field(path, "percentage"), errs)}
	switch {
	case d.FixedDelay != nil && d.HeaderDelay != nil:
		errs.Add(path, "set only one of fixed_delay and header_delay")
	case d.FixedDelay != nil:
		out.Fixed = d.FixedDelay.D().Truncate(time.Millisecond)
		if out.Fixed <= 0 {
			errs.Add(configjson.Field(path, "fixed_delay"), "must be at least 1ms, got %s", d.FixedDelay.D())
		}
	case d.HeaderDelay != nil:
		out.FromHeader = true
		if d.HeaderDelay.MaxDelay != nil {
			out.MaxDelay = d.HeaderDelay.MaxDelay.D()
			if out.MaxDelay < time.Millisecond {
				errs.Add(configjson.Field(configjson.Field(path, "header_delay"), "max_delay"), "must be at least 1ms, got %s", out.MaxDelay)
			}
		}
	default:
		errs.Add(path, "needs fixed_delay or header_delay")
	}
	return out
}

func compileAbort(a *AbortSpec, path string, errs *configjson.Errors) *Abort {
	out := &Abort{Percentage: compilePercent(a.Percentage, configjson.Field(path, "percentage"), errs)}
	n := 0
	if a.HTTPStatus != nil {
		n++
		if v := *a.HTTPStatus; v < 200 || v > 599 {
			errs.Add(configjson.Field(path, "http_status"), "must be 200–599, got %d", v)
		} else {
			out.HTTPStatus = uint32(v)
		}
	}
	if a.GRPCStatus != nil {
		n++
		if v := *a.GRPCStatus; v < 0 || v > 16 {
			errs.Add(configjson.Field(path, "grpc_status"), "must be a gRPC status code 0–16, got %d", v)
		} else {
			out.GRPCStatus = uint32(v)
		}
	}
	if a.HeaderAbort != nil {
		n++
		out.FromHeader = true
	}
	switch n {
	case 0:
		errs.Add(path, "needs http_status, grpc_status or header_abort")
	case 1:
	default:
		errs.Add(path, "set only one of http_status, grpc_status and header_abort")
	}
	if a.Body != nil {
		out.Body = []byte(*a.Body)
	} else {
		out.Body = []byte(DefaultAbortBody)
	}
	for i, h := range a.ResponseHeaders {
		hp := configjson.Index(configjson.Field(path, "response_headers"), i)
		name := strings.ToLower(h.Name)
		if err := checkHeaderName(name); err != nil {
			errs.Add(configjson.Field(hp, "name"), "%v", err)
			continue
		}
		if strings.HasPrefix(name, ":") || name == "content-length" || name == "transfer-encoding" {
			errs.Add(configjson.Field(hp, "name"), "%q is set by the filter and cannot be configured", name)
			continue
		}
		if strings.ContainsAny(h.Value, "\r\n\x00") {
			errs.Add(configjson.Field(hp, "value"), "must not contain CR, LF or NUL")
			continue
		}
		out.Headers = append(out.Headers, [2]string{name, h.Value})
	}
	return out
}

// checkHeaderName accepts an HTTP token (RFC 9110) optionally preceded by ':' (a
// pseudo-header), lower-case.
func checkHeaderName(name string) error {
	n := strings.TrimPrefix(name, ":")
	if n == "" {
		return fmt.Errorf("required")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Errorf("invalid header name %q", name)
		}
	}
	return nil
}

func compileHeader(h *HeaderMatcherSpec) (HeaderMatcher, error) {
	var errs configjson.Errors
	m := HeaderMatcher{Name: strings.ToLower(h.Name), Invert: h.InvertMatch}
	if err := checkHeaderName(m.Name); err != nil {
		errs.Add("name", "%v", err)
	}
	forms := 0 // string_match, present_match and the legacy fields: exactly one
	var re *RegexMatchSpec
	var rePath string
	value := func(k MatchKind, v *string) bool {
		if v == nil {
			return false
		}
		m.Kind, m.Value = k, *v
		return true
	}
	if s := h.StringMatch; s != nil {
		forms++
		k := 0
		for _, set := range []bool{value(MatchExact, s.Exact), value(MatchPrefix, s.Prefix),
			value(MatchSuffix, s.Suffix), value(MatchContains, s.Contains)} {
			if set {
				k++
			}
		}
		if s.SafeRegex != nil {
			k++
			m.Kind, re, rePath = MatchRegex, s.SafeRegex, "string_match.safe_regex.regex"
			if s.IgnoreCase {
				errs.Add("string_match.ignore_case", "not supported with safe_regex (use (?i) in the regex)")
			}
		}
		switch {
		case k == 0:
			errs.Add("string_match", "needs one of exact, prefix, suffix, contains, safe_regex")
		case k > 1:
			errs.Add("string_match", "set only one of exact, prefix, suffix, contains, safe_regex")
		}
		m.IgnoreCase = s.IgnoreCase && m.Kind != MatchRegex
	}
	if h.PresentMatch != nil {
		forms++
		m.Kind, m.Present = MatchPresent, *h.PresentMatch
	}
	for _, set := range []bool{value(MatchExact, h.ExactMatch), value(MatchPrefix, h.PrefixMatch),
		value(MatchSuffix, h.SuffixMatch), value(MatchContains, h.ContainsMatch)} {
		if set {
			forms++
		}
	}
	if h.SafeRegexMatch != nil {
		forms++
		m.Kind, re, rePath = MatchRegex, h.SafeRegexMatch, "safe_regex_match.regex"
	}
	switch {
	case forms == 0:
		errs.Add("", "needs string_match or present_match")
	case forms > 1:
		errs.Add("", "set only one of string_match, present_match, exact_match, prefix_match, suffix_match, contains_match, safe_regex_match")
	}
	if re != nil && errs.Len() == 0 {
		if re.Regex == "" {
			errs.Add(rePath, "required")
		} else if rx, err := regexp.Compile(`^(?:` + re.Regex + `)$`); err != nil {
			errs.Add(rePath, "invalid RE2 regular expression: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		} else {
			m.Regex = rx
		}
	}
	if m.IgnoreCase {
		m.Value = strings.ToLower(m.Value)
	}
	return m, errs.Err()
}

// String is a short human description of a percent, e.g. "25%" or "1/1000000".
func (p Percent) String() string {
	if p.Denominator == Hundred {
		return strconv.FormatUint(uint64(p.Numerator), 10) + "%"
	}
	return strconv.FormatUint(uint64(p.Numerator), 10) + "/" + strconv.FormatUint(uint64(p.Denominator), 10)
}
