package config

import (
	"regexp"

	"github.com/meshplug/meshplug/filters/httpreq"
)

// Limits enforced by Compile, so that a config cannot make a request's evaluation
// arbitrarily slow.
const (
	MaxRules           = 1000
	MaxTargets         = 256
	MaxConditions      = 64 // per match (all, plus every group's conditions)
	MaxValues          = 256
	MaxRegexBytes      = 1024
	MaxValueBytes      = 4096
	MaxHeadersPerTgt   = 16
	DefaultDenominator = 100
	// Buckets is the number of buckets a sticky key is hashed into: weights are
	// mapped onto [0, Buckets).
	Buckets = 10000
)

// Mode says which matching rules act.
type Mode uint8

const (
	// ModeFirst: the first matching rule acts.
	ModeFirst Mode = iota
	// ModeAll: every matching rule acts, in order.
	ModeAll
)

// Config is the compiled configuration: immutable after Compile, shared by every
// stream of a plugin.
type Config struct {
	Mode    Mode
	Targets []*Target // in config order; Target.Index is the position
	ByName  map[string]*Target
	Rules   []*Rule
	// Hints is every header removed from incoming requests before the rules run
	// (targets' headers and strip_headers, minus the trusted ones), normalized: lower
	// case, '_' written as '-'. A request header whose normalized name is here is
	// removed unless its exact name is in Trusted: so the underscore spellings
	// (x_route_hint), which some upstream frameworks fold into the same name, go too.
	Hints map[string]struct{}
	// HintList is Hints as a sorted slice: a request's headers are compared with it
	// (a short scan is cheaper than hashing in a wasm guest).
	HintList []string
	// HintNames are the hint headers' exact lower-case names as configured, minus the
	// trusted ones, sorted: what the glue removes blindly when it cannot read the
	// request headers (so that a failure never lets a client's hint through).
	HintNames []string
	// Trusted are the exact (lower-case) names of hint headers kept as received.
	Trusted  map[string]struct{}
	Override *Override
	// EchoHeader is the response header echoing the chosen targets ("" = none).
	EchoHeader string
	// NeedClientAddress says that a split hashes the client address, so the glue
	// reads the source.address property only then.
	NeedClientAddress bool
	// NeedPath says that a condition reads the path, so requests' paths are put in
	// canonical form only then.
	NeedPath bool
	// CookieNames and ParamNames are the cookie and query parameter names conditions
	// read, in the order first seen (Condition.Slot indexes them).
	CookieNames, ParamNames []string
	// Path is how the request path is read for path conditions (path_normalization).
	Path httpreq.PathOptions
}

// Header is a request header a target sets.
type Header struct{ Name, Value string }

// Target is a named set of hint headers.
type Target struct {
	Name    string
	Index   int
	Headers []Header // sorted by name
}

// Rule is a compiled rule: exactly one of Target and Split is set.
type Rule struct {
	Name   string
	Index  int
	Match  Match
	Target *Target
	Split  *Split
}

// Match is a condition in disjunctive normal form: all of All, and (when Any is not
// empty) all of at least one group of Any. The zero Match holds for every request.
type Match struct {
	All []Condition
	Any [][]Condition
}

// Empty reports whether the match holds for every request.
func (m *Match) Empty() bool { return len(m.All) == 0 && len(m.Any) == 0 }

// Source is the request input a condition or key reads.
type Source uint8

// Sources.
const (
	FromHeader Source = iota
	FromCookie
	FromQuery
	FromPath
	FromMethod
	FromClientAddress // keys only
)

var sourceNames = [...]string{"header", "cookie", "query", "path", "method", "client_address"}

func (s Source) String() string { return sourceNames[s] }

// Op is a condition's operator.
type Op uint8

// Operators.
const (
	OpEqual Op = iota
	OpNotEqual
	OpPrefix
	OpSuffix
	OpContains
	OpIn
	OpNotIn
	OpRegex
	OpExists
	OpNotExists
)

var opNames = [...]string{"equal", "not_equal", "prefix", "suffix", "contains", "in", "not_in", "regex", "exists", "not_exists"}

func (o Op) String() string { return opNames[o] }

// Negated reports whether the operator holds when no copy satisfies its positive
// form (not_equal, not_in): such operators hold for an absent input.
func (o Op) Negated() bool { return o == OpNotEqual || o == OpNotIn }

// Condition is a compiled condition.
type Condition struct {
	From Source
	Name string // header (lower-case), cookie or query name; "" for path and method
	Op   Op
	// Value is the operand of equal/not_equal/prefix/suffix/contains (ASCII
	// lower-cased when IgnoreCase).
	Value string
	// Values is the operand of in/not_in (lower-cased when IgnoreCase).
	Values     []string
	Regex      *regexp.Regexp // anchored: the whole value must match
	IgnoreCase bool
	// Slot is the position of Name in Config.CookieNames (FromCookie) or
	// Config.ParamNames (FromQuery): a request reads each name once, whatever
	// number of conditions test it.
	Slot int
}

// Split spreads requests over weighted targets.
type Split struct {
	Key     Source // FromHeader, FromCookie, FromQuery or FromClientAddress
	KeyName string // header (lower-case), cookie or query name
	Random  bool   // no key: random per request
	Salt    string
	// Targets and Bounds: target i owns buckets [Bounds[i-1], Bounds[i]) (Bounds[-1]
	// being 0); Bounds[len-1] == Buckets.
	Targets      []*Target
	Bounds       []uint32
	OnMissingKey *Target // nil: random
}

// Override lets a request force one of Allowed.
type Override struct {
	Header  string // lower-case, "" = none
	Cookie  string // "" = none
	Allowed map[string]*Target
	When    Match
}
