package config

import (
	"regexp"
	"sort"
	"strings"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// Parse decodes a JSON configuration strictly into a Spec and compiles it. Errors are
// *configjson.FieldError (or a configjson.ListError of them) naming the field path,
// e.g. `rules[2].match.all[0].value: invalid regex: ...`.
func Parse(data []byte) (*Config, error) {
	var s Spec
	if err := configjson.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return Compile(&s)
}

// Compile validates s and precomputes the runtime Config (lower-cased names, compiled
// regexps, bucket bounds, the set of headers to strip). Every problem found is
// reported, each with its field path.
func Compile(s *Spec) (*Config, error) {
	c := &compiler{cfg: &Config{ByName: map[string]*Target{}, Hints: map[string]struct{}{}, Trusted: map[string]struct{}{}}}
	c.compile(s)
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return c.cfg, nil
}

type compiler struct {
	cfg   *Config
	errs  configjson.Errors
	names map[string]bool // hint header names as configured (lower case)
}

func (c *compiler) hint(lname string) {
	if c.names == nil {
		c.names = map[string]bool{}
	}
	c.names[lname] = true
	c.cfg.Hints[normalize(lname)] = struct{}{}
}

func (c *compiler) compile(s *Spec) {
	cfg := c.cfg
	if pn := s.PathNormalization; pn != nil {
		var err error
		if cfg.Path.Params, err = httpreq.ParsePathParams(pn.PathParams); err != nil {
			c.errs.Add("path_normalization.path_params", "%v", err)
		}
	}
	switch s.Mode {
	case "", "first":
		cfg.Mode = ModeFirst
	case "all":
		cfg.Mode = ModeAll
	default:
		c.errs.Add("mode", "must be \"first\" or \"all\", got %q", s.Mode)
	}

	// Targets first: everything else refers to them.
	if len(s.Targets) == 0 {
		c.errs.Add("targets", "at least one target is required")
	}
	if len(s.Targets) > MaxTargets {
		c.errs.Add("targets", "at most %d targets, got %d", MaxTargets, len(s.Targets))
	}
	for i, ts := range s.Targets {
		path := configjson.Index("targets", i)
		if !c.label(configjson.Field(path, "name"), ts.Name) {
			continue
		}
		if _, dup := cfg.ByName[ts.Name]; dup {
			c.errs.Add(configjson.Field(path, "name"), "duplicate target name %q", ts.Name)
			continue
		}
		t := &Target{Name: ts.Name, Index: len(cfg.Targets)}
		if len(ts.Headers) > MaxHeadersPerTgt {
			c.errs.Add(configjson.Field(path, "headers"), "at most %d headers, got %d", MaxHeadersPerTgt, len(ts.Headers))
		}
		seen := map[string]string{}
		for name, value := range ts.Headers {
			hp := configjson.Key(configjson.Field(path, "headers"), name)
			lname, ok := c.hintHeaderName(hp, name)
			if !ok {
				continue
			}
			if other, dup := seen[lname]; dup {
				c.errs.Add(hp, "same header as %q (header names are case-insensitive)", other)
				continue
			}
			seen[lname] = name
			if !validValue(value) {
				c.errs.Add(hp, "invalid header value %q (control characters are not allowed; at most %d bytes)", value, MaxValueBytes)
				continue
			}
			t.Headers = append(t.Headers, Header{Name: lname, Value: value})
			c.hint(lname)
		}
		sort.Slice(t.Headers, func(a, b int) bool { return t.Headers[a].Name < t.Headers[b].Name })
		cfg.Targets = append(cfg.Targets, t)
		cfg.ByName[t.Name] = t
	}
	for i, h := range s.StripHeaders {
		if lname, ok := c.hintHeaderName(configjson.Index("strip_headers", i), h); ok {
			c.hint(lname)
		}
	}
	for i, h := range s.TrustedHeaders {
		path := configjson.Index("trusted_headers", i)
		lname := strings.ToLower(h)
		if _, ok := cfg.Hints[normalize(lname)]; !ok || !validHeaderName(lname) {
			c.errs.Add(path, "%q is not a hint header (a header of a target or of strip_headers)", h)
			continue
		}
		cfg.Trusted[lname] = struct{}{}
	}
	for name := range c.names {
		if _, trusted := cfg.Trusted[name]; !trusted {
			cfg.HintNames = append(cfg.HintNames, name)
		}
	}
	sort.Strings(cfg.HintNames)
	for name := range cfg.Hints {
		cfg.HintList = append(cfg.HintList, name)
	}
	sort.Strings(cfg.HintList)
	if s.EchoHeader != "" {
		cfg.EchoHeader = strings.ToLower(s.EchoHeader)
		if !validHeaderName(cfg.EchoHeader) || cfg.EchoHeader[0] == ':' {
			c.errs.Add("echo_header", "invalid header name %q", s.EchoHeader)
		}
	}

	if s.Override != nil {
		c.override(s.Override)
	}

	if len(s.Rules) > MaxRules {
		c.errs.Add("rules", "at most %d rules, got %d", MaxRules, len(s.Rules))
	}
	names := map[string]bool{}
	for i := range s.Rules {
		rs := &s.Rules[i]
		path := configjson.Index("rules", i)
		r := &Rule{Name: rs.Name, Index: i}
		if c.label(configjson.Field(path, "name"), rs.Name) {
			if names[rs.Name] {
				c.errs.Add(configjson.Field(path, "name"), "duplicate rule name %q", rs.Name)
			}
			names[rs.Name] = true
		}
		if rs.Match != nil {
			r.Match = c.match(configjson.Field(path, "match"), rs.Match)
		}
		switch {
		case rs.Target != "" && rs.Split != nil:
			c.errs.Add(path, "set exactly one of target and split, not both")
		case rs.Target != "":
			r.Target = c.target(configjson.Field(path, "target"), rs.Target)
		case rs.Split != nil:
			r.Split = c.split(configjson.Field(path, "split"), rs.Split, rs.Name)
		default:
			c.errs.Add(path, "set one of target and split")
		}
		cfg.Rules = append(cfg.Rules, r)
	}
}

func (c *compiler) override(o *OverrideSpec) {
	cfg := c.cfg
	ov := &Override{Allowed: map[string]*Target{}}
	if o.Header == "" && o.Cookie == "" {
		c.errs.Add("override", "set header or cookie (or both)")
	}
	if o.Header != "" {
		ov.Header = c.inputHeader("override.header", o.Header)
	}
	if o.Cookie != "" {
		if !validCookieName(o.Cookie) {
			c.errs.Add("override.cookie", "invalid cookie name %q", o.Cookie)
		}
		ov.Cookie = o.Cookie
	}
	if len(o.Allowed) == 0 {
		c.errs.Add("override.allowed", "at least one target is required")
	}
	for i, name := range o.Allowed {
		if t := c.target(configjson.Index("override.allowed", i), name); t != nil {
			ov.Allowed[name] = t
		}
	}
	if o.When != nil {
		ov.When = c.match("override.when", o.When)
	}
	cfg.Override = ov
}

// label checks a rule or target name: a DNS label.
func (c *compiler) label(path, s string) bool {
	if s == "" {
		c.errs.Add(path, "required")
		return false
	}
	if !dnsLabel(s) {
		c.errs.Add(path, "%q is not a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", s)
		return false
	}
	return true
}

func (c *compiler) target(path, name string) *Target {
	if name == "" {
		c.errs.Add(path, "required")
		return nil
	}
	t := c.cfg.ByName[name]
	if t == nil {
		c.errs.Add(path, "no target named %q", name)
	}
	return t
}

// hintHeaderName validates a header the filter sets or strips.
func (c *compiler) hintHeaderName(path, name string) (string, bool) {
	lname := strings.ToLower(name)
	switch {
	case !validHeaderName(lname):
		c.errs.Add(path, "invalid header name %q", name)
		return "", false
	case lname[0] == ':':
		c.errs.Add(path, "pseudo-header %q cannot be a hint header", name)
		return "", false
	case reservedHeaders[normalize(lname)]:
		c.errs.Add(path, "%q carries the request itself and cannot be a hint header", name)
		return "", false
	}
	return lname, true
}

// inputHeader validates a header the filter reads (condition, key, override): it must
// not be one the filter strips before reading, or the rule could never see it.
func (c *compiler) inputHeader(path, name string) string {
	lname := strings.ToLower(name)
	if !validHeaderName(lname) {
		c.errs.Add(path, "invalid header name %q", name)
		return lname
	}
	if _, hint := c.cfg.Hints[normalize(lname)]; hint {
		if _, trusted := c.cfg.Trusted[lname]; !trusted {
			c.errs.Add(path, "%q is a hint header, removed from requests before the rules run; list it in trusted_headers to read it", name)
		}
	}
	return lname
}

func (c *compiler) match(path string, m *MatchSpec) Match {
	var out Match
	n := len(m.All)
	for i := range m.All {
		out.All = append(out.All, c.condition(configjson.Index(configjson.Field(path, "all"), i), &m.All[i]))
	}
	for i, g := range m.Any {
		gp := configjson.Index(configjson.Field(path, "any"), i)
		if len(g.All) == 0 {
			c.errs.Add(configjson.Field(gp, "all"), "a group needs at least one condition")
		}
		n += len(g.All)
		var group []Condition
		for j := range g.All {
			group = append(group, c.condition(configjson.Index(configjson.Field(gp, "all"), j), &g.All[j]))
		}
		out.Any = append(out.Any, group)
	}
	if n > MaxConditions {
		c.errs.Add(path, "at most %d conditions, got %d", MaxConditions, n)
	}
	return out
}

func (c *compiler) condition(path string, s *ConditionSpec) Condition {
	cond := Condition{IgnoreCase: s.IgnoreCase}
	switch s.From {
	case "header":
		cond.From = FromHeader
	case "cookie":
		cond.From = FromCookie
	case "query":
		cond.From = FromQuery
	case "path":
		cond.From = FromPath
		c.cfg.NeedPath = true
	case "method":
		cond.From = FromMethod
	case "":
		c.errs.Add(configjson.Field(path, "from"), "required (header, cookie, query, path or method)")
	default:
		c.errs.Add(configjson.Field(path, "from"), "must be one of header, cookie, query, path, method; got %q", s.From)
	}
	namePath := configjson.Field(path, "name")
	switch {
	case s.From == "path" || s.From == "method":
		if s.Name != "" {
			c.errs.Add(namePath, "not allowed with from %q", s.From)
		}
	case s.Name == "":
		if s.From != "" {
			c.errs.Add(namePath, "required with from %q", s.From)
		}
	case s.From == "header":
		cond.Name = c.inputHeader(namePath, s.Name)
	case s.From == "cookie":
		if !validCookieName(s.Name) {
			c.errs.Add(namePath, "invalid cookie name %q", s.Name)
		}
		cond.Name = s.Name
		cond.Slot, c.cfg.CookieNames = slot(c.cfg.CookieNames, s.Name)
	default:
		cond.Name = s.Name
		if cond.From == FromQuery {
			cond.Slot, c.cfg.ParamNames = slot(c.cfg.ParamNames, s.Name)
		}
	}

	op := -1
	for i, n := range opNames {
		if n == s.Op {
			op = i
		}
	}
	opPath := configjson.Field(path, "op")
	if op < 0 {
		if s.Op == "" {
			c.errs.Add(opPath, "required")
		} else {
			c.errs.Add(opPath, "must be one of %s; got %q", strings.Join(opNames[:], ", "), s.Op)
		}
		return cond
	}
	cond.Op = Op(op)
	valuePath, valuesPath := configjson.Field(path, "value"), configjson.Field(path, "values")
	fold := func(v string) string {
		if s.IgnoreCase {
			return lowerASCII(v)
		}
		return v
	}
	switch cond.Op {
	case OpEqual, OpNotEqual, OpPrefix, OpSuffix, OpContains, OpRegex:
		if len(s.Values) > 0 {
			c.errs.Add(valuesPath, "not allowed with op %q (use value)", s.Op)
		}
		if len(s.Value) > MaxValueBytes {
			c.errs.Add(valuePath, "at most %d bytes", MaxValueBytes)
		}
		if cond.Op == OpRegex {
			cond.Regex = c.regex(valuePath, s.Value, s.IgnoreCase)
		} else {
			if s.Value == "" && cond.Op != OpEqual && cond.Op != OpNotEqual {
				c.errs.Add(valuePath, "required with op %q", s.Op)
			}
			cond.Value = fold(s.Value)
		}
	case OpIn, OpNotIn:
		if s.Value != "" {
			c.errs.Add(valuePath, "not allowed with op %q (use values)", s.Op)
		}
		if len(s.Values) == 0 {
			c.errs.Add(valuesPath, "at least one value is required with op %q", s.Op)
		}
		if len(s.Values) > MaxValues {
			c.errs.Add(valuesPath, "at most %d values, got %d", MaxValues, len(s.Values))
		}
		for i, v := range s.Values {
			if len(v) > MaxValueBytes {
				c.errs.Add(configjson.Index(valuesPath, i), "at most %d bytes", MaxValueBytes)
			}
			cond.Values = append(cond.Values, fold(v))
		}
	}
	if cond.From == FromPath {
		// Paths are compared in canonical form: an operand in another spelling would
		// never be equal to, or a prefix of, the request's path.
		check := func(p, v string) {
			if _, err := httpreq.CanonicalRulePath(v, httpreq.PathOptions{}); err != nil {
				c.errs.Add(p, "%v", err)
			}
		}
		switch cond.Op {
		case OpEqual, OpNotEqual, OpPrefix:
			check(valuePath, s.Value)
		case OpIn, OpNotIn:
			for i, v := range s.Values {
				check(configjson.Index(valuesPath, i), v)
			}
		}
	}
	switch cond.Op {
	case OpExists, OpNotExists:
		if s.Value != "" {
			c.errs.Add(valuePath, "not allowed with op %q", s.Op)
		}
		if len(s.Values) > 0 {
			c.errs.Add(valuesPath, "not allowed with op %q", s.Op)
		}
		if s.IgnoreCase {
			c.errs.Add(configjson.Field(path, "ignore_case"), "not allowed with op %q", s.Op)
		}
		if s.From == "path" || s.From == "method" {
			c.errs.Add(opPath, "%q is always present; %q does not apply", s.From, s.Op)
		}
	}
	return cond
}

func (c *compiler) regex(path, pattern string, ignoreCase bool) *regexp.Regexp {
	if ignoreCase {
		c.errs.Add(strings.TrimSuffix(path, ".value")+".ignore_case", "not allowed with op \"regex\" (write (?i) in the pattern)")
	}
	if pattern == "" {
		c.errs.Add(path, "required with op \"regex\"")
		return nil
	}
	if len(pattern) > MaxRegexBytes {
		c.errs.Add(path, "regex of %d bytes, at most %d allowed", len(pattern), MaxRegexBytes)
		return nil
	}
	// Anchored like Envoy's safe_regex (full match).
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		if _, e2 := regexp.Compile(pattern); e2 != nil {
			err = e2 // report the user's pattern, not the anchored one
		}
		c.errs.Add(path, "invalid regex: %v", err)
		return nil
	}
	return re
}

func (c *compiler) split(path string, s *SplitSpec, rule string) *Split {
	sp := &Split{Salt: rule}
	if s.Salt != nil {
		sp.Salt = *s.Salt
	}
	if s.Key == nil {
		sp.Random = true
	} else {
		kp := configjson.Field(path, "key")
		k, set := s.Key, 0
		if k.Header != "" {
			set++
			sp.Key, sp.KeyName = FromHeader, c.inputHeader(configjson.Field(kp, "header"), k.Header)
		}
		if k.Cookie != "" {
			set++
			sp.Key, sp.KeyName = FromCookie, k.Cookie
			if !validCookieName(k.Cookie) {
				c.errs.Add(configjson.Field(kp, "cookie"), "invalid cookie name %q", k.Cookie)
			}
		}
		if k.Query != "" {
			set++
			sp.Key, sp.KeyName = FromQuery, k.Query
		}
		if k.ClientAddress {
			set++
			sp.Key = FromClientAddress
			c.cfg.NeedClientAddress = true
		}
		if set != 1 {
			c.errs.Add(kp, "set exactly one of header, cookie, query and client_address")
		}
	}
	den := s.Denominator
	switch den {
	case 0:
		den = DefaultDenominator
	case 100, 10000:
	default:
		c.errs.Add(configjson.Field(path, "denominator"), "must be 100 or 10000, got %d", den)
		den = DefaultDenominator
	}
	wp := configjson.Field(path, "weights")
	if len(s.Weights) == 0 {
		c.errs.Add(wp, "at least one target is required")
	}
	seen := map[string]bool{}
	sum := 0
	for i, w := range s.Weights {
		ip := configjson.Index(wp, i)
		t := c.target(configjson.Field(ip, "target"), w.Target)
		if t != nil && seen[w.Target] {
			c.errs.Add(configjson.Field(ip, "target"), "target %q listed twice", w.Target)
		}
		seen[w.Target] = true
		if w.Weight < 0 || w.Weight > den {
			c.errs.Add(configjson.Field(ip, "weight"), "must be between 0 and %d, got %d", den, w.Weight)
			continue
		}
		sum += w.Weight
		sp.Targets = append(sp.Targets, t)
		// Integer arithmetic, the same on every platform: with denominator 100 each
		// percent is 100 buckets.
		sp.Bounds = append(sp.Bounds, uint32(sum*(Buckets/den)))
	}
	if len(s.Weights) > 0 && sum != den {
		c.errs.Add(wp, "weights add up to %d, must add up to the denominator %d", sum, den)
	}
	if s.OnMissingKey != "" {
		if sp.Random {
			c.errs.Add(configjson.Field(path, "on_missing_key"), "only with a key")
		}
		sp.OnMissingKey = c.target(configjson.Field(path, "on_missing_key"), s.OnMissingKey)
	}
	return sp
}

// reservedHeaders may not be hint headers (normalized names): they carry the request
// itself, its routing or its credentials, and stripping or overwriting them would
// change what the request is.
var reservedHeaders = map[string]bool{
	"host": true, "cookie": true, "authorization": true, "proxy-authorization": true,
	"content-length": true, "content-type": true, "content-encoding": true,
	"transfer-encoding": true, "te": true, "connection": true, "upgrade": true,
	"keep-alive": true, "proxy-connection": true, "expect": true, "trailer": true,
	"x-forwarded-for": true, "x-forwarded-proto": true, "x-forwarded-host": true,
	"x-request-id": true, "x-envoy-original-path": true,
}

// Normalize is how hint header names are compared when stripping: ASCII lower case,
// '_' as '-'. Envoy keeps x_route_hint and x-route-hint apart, but CGI-style upstreams
// (and Envoy's own headers_with_underscores_action when set to allow) may not.
func Normalize(name string) string { return normalize(name) }

func normalize(name string) string {
	if strings.IndexByte(name, '_') < 0 && !hasUpper(name) {
		return name
	}
	b := []byte(name)
	for i, ch := range b {
		switch {
		case ch == '_':
			b[i] = '-'
		case 'A' <= ch && ch <= 'Z':
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	if !hasUpper(s) {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
			return false
		}
	}
	return true
}

// validHeaderName: an RFC 9110 token (or a pseudo-header ':' + token), lower case.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	if s[0] == ':' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) || 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return true
}

// validCookieName: an RFC 6265 cookie-name (a token).
func validCookieName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(ch byte) bool {
	switch {
	case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
}

// validValue: a header value Envoy accepts (no NUL, CR, LF or other controls but
// HTAB), without leading or trailing whitespace.
func validValue(s string) bool {
	if len(s) > MaxValueBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch < 0x20 && ch != '\t' || ch == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(s) == s
}

// slot returns name's position in names, appending it when it is not there yet.
func slot(names []string, name string) (int, []string) {
	for i, n := range names {
		if n == name {
			return i, names
		}
	}
	return len(names), append(names, name)
}
