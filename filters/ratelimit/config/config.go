package config

import (
	"encoding/binary"
	"math"
	"math/bits"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// Defaults applied by Compile.
const (
	DefaultDomain  = "meshplug"
	DefaultMaxKeys = 65536
	DefaultStatus  = 429
	// GroupWays is how many buckets one shared-data entry (a slot group) holds.
	GroupWays = 8
	// KeysPerGroup sizes the table: MaxKeys/KeysPerGroup groups, so that MaxKeys
	// active keys fill a quarter of the slots and groups rarely overflow.
	KeysPerGroup = 2
	// MaxRequests bounds Limit.Requests and Limit.Burst.
	MaxRequests = 1_000_000_000
	// DefaultGlobalTimeout is Envoy's ratelimit filter's default timeout.
	DefaultGlobalTimeout = 20 * time.Millisecond
	// DefaultStatusOnError is Envoy's status_on_error default (500).
	DefaultStatusOnError = 500
	// RuleKey is the key of the entry that starts every descriptor sent in the global
	// mode, with the rule's name as value, so that rules with the same keys keep
	// separate counters in the service. It is Envoy's generic_key action's default
	// descriptor key.
	RuleKey = "generic_key"
)

// Global is the compiled rate limit service settings of the global mode.
type Global struct {
	Cluster         string
	Timeout         time.Duration
	FailureModeDeny bool
	StatusOnError   int
	LocalPrecheck   bool
}

// HeaderStyle selects the rate limit response headers.
type HeaderStyle uint8

const (
	HeadersRateLimit  HeaderStyle = iota // RateLimit-Limit/-Remaining/-Reset
	HeadersXRateLimit                    // X-RateLimit-Limit/-Remaining/-Reset
	HeadersNone
)

// MissingKey is what a rule does with a request whose descriptor value is absent.
type MissingKey uint8

const (
	MissingAllow MissingKey = iota
	MissingAnonymous
	MissingDeny
)

// Source is where a descriptor entry's value comes from.
type Source uint8

const (
	SourceHeader Source = iota
	SourceCookie
	SourceQueryParam
	SourceClientAddress
	SourcePath
	SourceMethod
	SourceValue
)

// Config is the compiled configuration; immutable after Compile.
type Config struct {
	Domain            string
	Rules             []*Rule
	Headers           HeaderStyle
	HeadersOnAllowed  bool
	XFFNumTrustedHops int
	MaxKeys           int
	// Groups is the number of shared-data entries buckets live in: MaxKeys/KeysPerGroup.
	Groups int
	Shadow bool
	Status int
	GRPC   bool
	// Headers, cookies and query parameters any rule reads (lower-case header names;
	// decoded parameter names), and whether a rule needs the client address.
	HeaderNames, CookieNames, ParamNames []string
	NeedsClientAddress                   bool
	// NeedsPath: a rule matches on the path or has a path descriptor, so requests'
	// paths are put in canonical form (the reader skips that work otherwise).
	NeedsPath bool
	// Global is non-nil in the global mode: the rules' descriptors go to the rate
	// limit service, which holds the counters.
	Global *Global
	// Path is how request paths are read (path_normalization).
	Path httpreq.PathOptions
}

// Rule is a compiled rule.
type Rule struct {
	Index       int
	Name        string
	Match       Match
	Entries     []Entry
	Limit       Limit
	Overrides   []Override
	MissingKey  MissingKey
	Shadow      bool // the rule's or the whole config's shadow flag
	HasClientIP bool // an entry is SourceClientAddress
}

// Match is a compiled match; zero value matches everything.
type Match struct {
	Prefix, Path string
	Regex        *regexp.Regexp
	Methods      []string // upper-case; nil = any
	Headers      []HeaderMatch
}

// Empty reports whether m matches every request (no condition).
func (m *Match) Empty() bool {
	return m.Prefix == "" && m.Path == "" && m.Regex == nil && len(m.Methods) == 0 && len(m.Headers) == 0
}

// HeaderMatch is a compiled header condition.
type HeaderMatch struct {
	Name          string // lower-case
	Exact, Prefix string
	Kind          HeaderMatchKind
	Invert        bool
	Slot          int // position of Name in Config.HeaderNames
}

// HeaderMatchKind says which comparison a HeaderMatch makes.
type HeaderMatchKind uint8

const (
	HeaderExact HeaderMatchKind = iota
	HeaderPrefix
	HeaderPresent
	HeaderAbsent
)

// Entry is a compiled descriptor entry.
type Entry struct {
	Key    string
	Source Source
	Name   string // header (lower-case), cookie, or decoded query parameter name
	Value  string // SourceValue's constant
	// Slot is the position of Name in Config.HeaderNames, CookieNames or ParamNames
	// (by Source), where the read step keeps the request's values.
	Slot int
}

// Limit is a compiled token bucket. The engine keeps tokens scaled by Period (in
// nanoseconds): capacity Burst×Period, refill Requests per nanosecond, cost Period per
// request, so that refill is exact integer arithmetic for every rate.
type Limit struct {
	Requests int64
	Burst    int64
	Period   time.Duration
	Unit     string // "second", "minute", "hour", "day", or "" for a Per period
	// ID names the limit inside bucket keys: a changed limit starts fresh buckets.
	ID string
	// Header is the RateLimit-Limit value: "100, 100;w=60" (the quota policy only
	// when Period is whole seconds), "3" otherwise.
	Header string
	// Step is how long the bucket takes to refill one request's tokens (Period /
	// Requests, rounded up), stored with every bucket for eviction.
	Step int64
}

// Override is a compiled override.
type Override struct {
	Values    []ValueMatch
	Limit     *Limit // nil when Unlimited
	Unlimited bool
}

// ValueMatch compares the value of the rule's entry Entry.
type ValueMatch struct {
	Entry  int
	Value  string
	Prefix bool // Value is a prefix
}

// Parse decodes data strictly and compiles it. Errors are *configjson.FieldError or a
// configjson.ListError.
func Parse(data []byte) (*Config, error) {
	var s Spec
	if err := configjson.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return Compile(&s)
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	keyRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	tokenRE  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 9110 token
	unitDurs = map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}
)

// Compile validates s and builds the runtime Config. All problems are reported at
// once, each with its field path.
func Compile(s *Spec) (*Config, error) {
	var errs configjson.Errors
	c := &Config{Domain: s.Domain, HeadersOnAllowed: s.HeadersOnAllowed, XFFNumTrustedHops: s.XFFNumTrustedHops,
		MaxKeys: s.MaxKeys, Shadow: s.Shadow, Status: s.Status, GRPC: true}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	} else if !keyRE.MatchString(c.Domain) {
		errs.Add("domain", "must match [A-Za-z0-9_.-]+, got %q", c.Domain)
	}
	switch s.Headers {
	case "", "ratelimit":
		c.Headers = HeadersRateLimit
	case "x-ratelimit":
		c.Headers = HeadersXRateLimit
	case "none":
		c.Headers = HeadersNone
	default:
		errs.Add("headers", "must be \"ratelimit\", \"x-ratelimit\" or \"none\", got %q", s.Headers)
	}
	if c.XFFNumTrustedHops < 0 || c.XFFNumTrustedHops > 16 {
		errs.Add("xff_num_trusted_hops", "must be 0..16, got %d", c.XFFNumTrustedHops)
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	} else if c.MaxKeys < 64 || c.MaxKeys > 4194304 {
		errs.Add("max_keys", "must be 64..4194304, got %d", c.MaxKeys)
	}
	c.Groups = (c.MaxKeys + KeysPerGroup - 1) / KeysPerGroup
	if c.Status == 0 {
		c.Status = DefaultStatus
	} else if c.Status < 400 || c.Status > 599 {
		errs.Add("status", "must be 400..599, got %d", c.Status)
	}
	if s.GRPC != nil {
		c.GRPC = *s.GRPC
	}
	if len(s.Rules) == 0 {
		errs.Add("rules", "at least one rule is required")
	}
	switch s.Mode {
	case "", "local":
		if s.Global != nil {
			errs.Add("global", "only with mode \"global\"")
		}
	case "global":
		c.Global = compileGlobal(&errs, s.Global)
	default:
		errs.Add("mode", "must be \"local\" or \"global\", got %q", s.Mode)
	}
	if pn := s.PathNormalization; pn != nil {
		var err error
		if c.Path.Params, err = httpreq.ParsePathParams(pn.PathParams); err != nil {
			errs.Add("path_normalization.path_params", "%v", err)
		}
		c.Path.IgnoreCase = pn.IgnoreCase
	}
	names := map[string]int{}
	headers, cookies, params := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range s.Rules {
		p := configjson.Index("rules", i)
		r := compileRule(&errs, p, &s.Rules[i], i, c.Path)
		if r == nil {
			continue
		}
		if j, dup := names[r.Name]; dup {
			errs.Add(configjson.Field(p, "name"), "duplicate rule name %q (also rules[%d])", r.Name, j)
		}
		names[r.Name] = i
		r.Shadow = r.Shadow || c.Shadow
		for _, e := range r.Entries {
			switch e.Source {
			case SourceHeader:
				headers[e.Name] = true
			case SourceCookie:
				cookies[e.Name] = true
			case SourceQueryParam:
				params[e.Name] = true
			case SourceClientAddress:
				c.NeedsClientAddress = true
			case SourcePath:
				c.NeedsPath = true
			}
		}
		if r.Match.Path != "" || r.Match.Prefix != "" || r.Match.Regex != nil {
			c.NeedsPath = true
		}
		for _, h := range r.Match.Headers {
			headers[h.Name] = true
		}
		if s.Mode == "global" {
			checkGlobalRule(&errs, p, &s.Rules[i], r)
		}
		c.Rules = append(c.Rules, r)
	}
	c.HeaderNames, c.CookieNames, c.ParamNames = sorted(headers), sorted(cookies), sorted(params)
	for _, r := range c.Rules {
		for i := range r.Entries {
			e := &r.Entries[i]
			switch e.Source {
			case SourceHeader:
				e.Slot = sort.SearchStrings(c.HeaderNames, e.Name)
			case SourceCookie:
				e.Slot = sort.SearchStrings(c.CookieNames, e.Name)
			case SourceQueryParam:
				e.Slot = sort.SearchStrings(c.ParamNames, e.Name)
			}
		}
		for i := range r.Match.Headers {
			r.Match.Headers[i].Slot = sort.SearchStrings(c.HeaderNames, r.Match.Headers[i].Name)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func compileGlobal(errs *configjson.Errors, s *GlobalSpec) *Global {
	if s == nil {
		errs.Add("global", "required with mode \"global\"")
		return nil
	}
	g := &Global{Cluster: s.Cluster, Timeout: s.Timeout.D(), FailureModeDeny: s.FailureModeDeny, StatusOnError: s.StatusOnError,
		LocalPrecheck: s.LocalPrecheck}
	if g.Cluster == "" {
		errs.Add("global.cluster", "required")
	}
	if g.Timeout == 0 {
		g.Timeout = DefaultGlobalTimeout
	} else if g.Timeout < time.Millisecond || g.Timeout > time.Minute {
		errs.Add("global.timeout", "must be 1ms..60s, got %s", g.Timeout)
	}
	if g.StatusOnError == 0 {
		g.StatusOnError = DefaultStatusOnError
	} else if g.StatusOnError < 400 || g.StatusOnError > 599 {
		errs.Add("global.status_on_error", "must be 400..599, got %d", g.StatusOnError)
	}
	return g
}

// checkGlobalRule refuses what the rate limit service cannot do: its limits are
// fixed windows of a unit (envoyproxy/ratelimit's rate_limit: unit, requests_per_unit),
// so no `per` period and no burst other than requests; and a descriptor entry always
// has a value, so no "anonymous" bucket for requests without one.
func checkGlobalRule(errs *configjson.Errors, p string, s *RuleSpec, r *Rule) {
	limit := func(lp string, l *LimitSpec) {
		if l.Per != 0 {
			errs.Add(configjson.Field(lp, "per"), "the global mode takes a unit (second, minute, hour, day), not per")
		}
		if l.Burst != 0 && l.Burst != l.Requests {
			errs.Add(configjson.Field(lp, "burst"), "the global mode's fixed windows have no burst (leave it unset)")
		}
	}
	limit(configjson.Field(p, "limit"), &s.Limit)
	for j := range s.Overrides {
		if s.Overrides[j].Limit != nil {
			limit(configjson.Field(configjson.Index(configjson.Field(p, "overrides"), j), "limit"), s.Overrides[j].Limit)
		}
	}
	if r.MissingKey == MissingAnonymous {
		errs.Add(configjson.Field(p, "missing_key"), "\"anonymous\" is local-only: use \"allow\" or \"deny\" in the global mode")
	}
	for j, e := range r.Entries {
		if e.Key == RuleKey {
			errs.Add(configjson.Field(configjson.Index(configjson.Field(p, "descriptors"), j), "key"), "%q is the rule's own entry in the global mode", RuleKey)
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func compileRule(errs *configjson.Errors, p string, s *RuleSpec, i int, po httpreq.PathOptions) *Rule {
	n := errs.Len()
	r := &Rule{Index: i, Name: s.Name, Shadow: s.Shadow}
	if s.Name == "" {
		errs.Add(configjson.Field(p, "name"), "required")
	} else if !nameRE.MatchString(s.Name) {
		errs.Add(configjson.Field(p, "name"), "must match [A-Za-z0-9_-]+, got %q", s.Name)
	}
	if s.Match != nil {
		r.Match = compileMatch(errs, configjson.Field(p, "match"), s.Match, po)
	}
	if len(s.Descriptors) == 0 {
		errs.Add(configjson.Field(p, "descriptors"), "at least one descriptor entry is required")
	}
	keys := map[string]int{}
	for j := range s.Descriptors {
		dp := configjson.Index(configjson.Field(p, "descriptors"), j)
		e, ok := compileEntry(errs, dp, &s.Descriptors[j])
		if !ok {
			continue
		}
		if _, dup := keys[e.Key]; dup {
			errs.Add(configjson.Field(dp, "key"), "duplicate descriptor key %q", e.Key)
		}
		keys[e.Key] = len(r.Entries)
		if e.Source == SourceClientAddress {
			r.HasClientIP = true
		}
		r.Entries = append(r.Entries, e)
	}
	if l, ok := compileLimit(errs, configjson.Field(p, "limit"), &s.Limit); ok {
		r.Limit = l
	}
	for j := range s.Overrides {
		op := configjson.Index(configjson.Field(p, "overrides"), j)
		o := &s.Overrides[j]
		var co Override
		if len(o.Values) == 0 {
			errs.Add(configjson.Field(op, "values"), "at least one value is required")
		}
		vkeys := make([]string, 0, len(o.Values))
		for k := range o.Values {
			vkeys = append(vkeys, k)
		}
		sort.Strings(vkeys)
		for _, k := range vkeys {
			v := o.Values[k]
			idx, ok := keys[k]
			if !ok {
				errs.Add(configjson.Key(configjson.Field(op, "values"), k), "the rule has no descriptor entry with this key")
				continue
			}
			vm := ValueMatch{Entry: idx, Value: v}
			if strings.HasSuffix(v, "*") {
				vm.Value, vm.Prefix = v[:len(v)-1], true
			}
			co.Values = append(co.Values, vm)
		}
		switch {
		case o.Unlimited && o.Limit != nil:
			errs.Add(op, "limit and unlimited are exclusive")
		case o.Unlimited:
			co.Unlimited = true
		case o.Limit != nil:
			if l, ok := compileLimit(errs, configjson.Field(op, "limit"), o.Limit); ok {
				co.Limit = &l
			}
		default:
			errs.Add(op, "one of limit and unlimited is required")
		}
		r.Overrides = append(r.Overrides, co)
	}
	switch s.MissingKey {
	case "", "allow":
		r.MissingKey = MissingAllow
	case "anonymous":
		r.MissingKey = MissingAnonymous
	case "deny":
		r.MissingKey = MissingDeny
	default:
		errs.Add(configjson.Field(p, "missing_key"), "must be \"allow\", \"anonymous\" or \"deny\", got %q", s.MissingKey)
	}
	if errs.Len() > n {
		return nil
	}
	return r
}

func compileMatch(errs *configjson.Errors, p string, s *MatchSpec, po httpreq.PathOptions) Match {
	var m Match
	set := 0
	canon := func(field, v string) string {
		if v[0] != '/' {
			errs.Add(configjson.Field(p, field), "must start with '/'")
			return v
		}
		c, err := httpreq.CanonicalRulePath(v, po)
		if err != nil {
			errs.Add(configjson.Field(p, field), "%v", err)
		}
		return c
	}
	if s.Prefix != "" {
		set++
		m.Prefix = canon("prefix", s.Prefix)
	}
	if s.Path != "" {
		set++
		m.Path = canon("path", s.Path)
	}
	if s.Regex != "" {
		set++
		expr := s.Regex
		if po.IgnoreCase {
			expr = "(?i)" + expr // the canonical path is lower-cased
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			errs.Add(configjson.Field(p, "regex"), "invalid regexp: %v", err)
		}
		m.Regex = re
	}
	if set > 1 {
		errs.Add(p, "at most one of prefix, path and regex")
	}
	for i, meth := range s.Methods {
		if !tokenRE.MatchString(meth) {
			errs.Add(configjson.Index(configjson.Field(p, "methods"), i), "not a method token: %q", meth)
			continue
		}
		m.Methods = append(m.Methods, strings.ToUpper(meth))
	}
	for i := range s.Headers {
		hp := configjson.Index(configjson.Field(p, "headers"), i)
		h := &s.Headers[i]
		hm := HeaderMatch{Name: strings.ToLower(h.Name), Exact: h.Exact, Prefix: h.Prefix, Invert: h.Invert}
		if !tokenRE.MatchString(h.Name) {
			errs.Add(configjson.Field(hp, "name"), "not a header name: %q", h.Name)
		}
		kinds := 0
		if h.Exact != "" {
			kinds++
			hm.Kind = HeaderExact
		}
		if h.Prefix != "" {
			kinds++
			hm.Kind = HeaderPrefix
		}
		if h.Present != nil {
			kinds++
			hm.Kind = HeaderAbsent
			if *h.Present {
				hm.Kind = HeaderPresent
			}
		}
		if kinds != 1 {
			errs.Add(hp, "exactly one of exact, prefix and present is required")
		}
		m.Headers = append(m.Headers, hm)
	}
	return m
}

func compileEntry(errs *configjson.Errors, p string, s *DescriptorSpec) (Entry, bool) {
	n := errs.Len()
	e := Entry{Key: s.Key}
	if s.Key == "" {
		errs.Add(configjson.Field(p, "key"), "required")
	} else if !keyRE.MatchString(s.Key) {
		errs.Add(configjson.Field(p, "key"), "must match [A-Za-z0-9_.-]+, got %q", s.Key)
	}
	sources := 0
	if s.Header != "" {
		sources++
		e.Source, e.Name = SourceHeader, strings.ToLower(s.Header)
		if !tokenRE.MatchString(s.Header) || strings.HasPrefix(s.Header, ":") {
			errs.Add(configjson.Field(p, "header"), "not a header name: %q (use path or method for pseudo-headers)", s.Header)
		} else if e.Name == "cookie" {
			errs.Add(configjson.Field(p, "header"), "use cookie to key on a cookie")
		}
	}
	if s.Cookie != "" {
		sources++
		e.Source, e.Name = SourceCookie, s.Cookie
		if !tokenRE.MatchString(s.Cookie) {
			errs.Add(configjson.Field(p, "cookie"), "not a cookie name: %q", s.Cookie)
		}
	}
	if s.QueryParam != "" {
		sources++
		e.Source = SourceQueryParam
		// Names are matched decoded, as upstream parsers decode them; the configured
		// name is taken literally (a '%' in it is not decoded).
		e.Name = s.QueryParam
		if strings.ContainsAny(s.QueryParam, "&=#") {
			errs.Add(configjson.Field(p, "query_param"), "must not contain '&', '=' or '#'")
		}
	}
	if s.ClientAddress {
		sources++
		e.Source = SourceClientAddress
	}
	if s.Path {
		sources++
		e.Source = SourcePath
	}
	if s.Method {
		sources++
		e.Source = SourceMethod
	}
	if s.Value != "" {
		sources++
		e.Source, e.Value = SourceValue, s.Value
	}
	if sources != 1 {
		errs.Add(p, "exactly one of header, cookie, query_param, client_address, path, method and value is required")
	}
	return e, errs.Len() == n
}

func compileLimit(errs *configjson.Errors, p string, s *LimitSpec) (Limit, bool) {
	n := errs.Len()
	l := Limit{Requests: s.Requests, Burst: s.Burst, Unit: s.Unit}
	if s.Requests < 1 || s.Requests > MaxRequests {
		errs.Add(configjson.Field(p, "requests"), "must be 1..%d, got %d", MaxRequests, s.Requests)
	}
	switch {
	case s.Unit != "" && s.Per != 0:
		errs.Add(p, "unit and per are exclusive")
	case s.Unit != "":
		d, ok := unitDurs[s.Unit]
		if !ok {
			errs.Add(configjson.Field(p, "unit"), "must be second, minute, hour or day, got %q", s.Unit)
		}
		l.Period = d
	case s.Per != 0:
		l.Period = s.Per.D()
		if l.Period < time.Millisecond || l.Period > 24*time.Hour {
			errs.Add(configjson.Field(p, "per"), "must be 1ms..24h, got %s", l.Period)
		}
	default:
		errs.Add(p, "one of unit and per is required")
	}
	if l.Burst == 0 {
		l.Burst = l.Requests
	} else if l.Burst < 1 || l.Burst > MaxRequests {
		errs.Add(configjson.Field(p, "burst"), "must be 1..%d, got %d", MaxRequests, l.Burst)
	}
	if errs.Len() > n {
		return l, false
	}
	// Capacity is Burst×Period scaled tokens; keep it (plus one refill step) in int63.
	if hi, lo := bits.Mul64(uint64(l.Burst), uint64(l.Period)); hi != 0 || lo > math.MaxInt64/2 {
		errs.Add(configjson.Field(p, "burst"), "burst × period is too large (%d × %s)", l.Burst, l.Period)
		return l, false
	}
	// Compact (three uvarints): it is hashed, compared and stored with every bucket.
	l.ID = string(binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, uint64(l.Requests)), uint64(l.Period)), uint64(l.Burst)))
	l.Step = (int64(l.Period) + l.Requests - 1) / l.Requests
	l.Header = strconv.FormatInt(l.Requests, 10)
	if l.Period%time.Second == 0 {
		l.Header += ", " + l.Header + ";w=" + strconv.FormatInt(int64(l.Period/time.Second), 10)
	}
	return l, true
}
