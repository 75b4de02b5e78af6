// Package enginetest is the ratelimit filter's decision table, replayed by the native
// engine tests (engine_test.go) and through the compiled ratelimit.wasm in testenv
// (filters/ratelimit), so that both are checked against one source of truth.
package enginetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Start is the fake clock's start in every case.
var Start = time.Unix(1_700_000_000, 0)

// DefaultSource is the connection address of a request without Source (testenv's
// default source.address).
const DefaultSource = "127.0.0.1:40000"

// Request is one request of a step.
type Request struct {
	Method  string // default GET
	Path    string // default /
	Headers [][2]string
	Source  string // source.address; default DefaultSource
}

// Step advances the clock, sends a request and states what the client must get.
type Step struct {
	Advance time.Duration
	Req     Request
	// Status is the HTTP status (200: the request reached the upstream). For gRPC
	// rejections, GRPCStatus instead.
	Status     int
	GRPCStatus int
	// Headers must be on the response with these values ("" = must be absent).
	Headers map[string]string
}

// Case is a configuration and the steps run against it, in order, on fresh buckets.
type Case struct {
	Name   string
	Config string
	Steps  []Step
}

func get(path string, h ...string) Request {
	r := Request{Path: path}
	for i := 0; i+1 < len(h); i += 2 {
		r.Headers = append(r.Headers, [2]string{h[i], h[i+1]})
	}
	return r
}

func from(src string, r Request) Request { r.Source = src; return r }

func ok(r Request) Step      { return Step{Req: r, Status: 200} }
func limited(r Request) Step { return Step{Req: r, Status: 429} }

// refused is a request refused for an ambiguous key (filters/httpreq's rule): 400,
// and no Retry-After (retrying the same request cannot pass).
func refused(r Request) Step {
	return Step{Req: r, Status: 400, Headers: map[string]string{"retry-after": "", "ratelimit-limit": ""}}
}
func after(d time.Duration, s Step) Step { s.Advance = d; return s }
func with(s Step, kv ...string) Step {
	s.Headers = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		s.Headers[kv[i]] = kv[i+1]
	}
	return s
}

const rule3ps = `{"rules":[{"name":"r","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":3,"unit":"second"}}]}`

// Cases is the decision table.
var Cases = []Case{
	{Name: "burst, headers and exact refill", Config: `{"rules":[{"name":"r","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":3,"unit":"second"},"missing_key":"deny"}],"headers_on_allowed":true}`,
		Steps: []Step{
			with(ok(get("/", "x-user", "a")), "ratelimit-limit", "3, 3;w=1", "ratelimit-remaining", "2", "ratelimit-reset", "1", "retry-after", ""),
			with(ok(get("/", "x-user", "a")), "ratelimit-remaining", "1"),
			with(ok(get("/", "x-user", "a")), "ratelimit-remaining", "0"),
			with(limited(get("/", "x-user", "a")), "retry-after", "1", "ratelimit-remaining", "0", "ratelimit-reset", "1", "content-type", "application/json"),
			// One token every 333,333,333.3 ns: not yet at +333,333,333 ns, at +1 ns more.
			after(333333333, limited(get("/", "x-user", "a"))),
			after(1, with(ok(get("/", "x-user", "a")), "ratelimit-remaining", "0")),
			// Other keys have their own buckets.
			ok(get("/", "x-user", "b")),
			// A full second refills the burst, not more.
			after(10*time.Second, ok(get("/", "x-user", "a"))), ok(get("/", "x-user", "a")), ok(get("/", "x-user", "a")), limited(get("/", "x-user", "a")),
		}},
	{Name: "token bucket with burst", Config: `{"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":2,"per":"1.5s","burst":5}}],"headers":"x-ratelimit"}`,
		Steps: []Step{
			ok(get("/")), ok(get("/")), ok(get("/")), ok(get("/")), ok(get("/")),
			with(limited(get("/")), "retry-after", "1", "x-ratelimit-limit", "2", "x-ratelimit-remaining", "0", "x-ratelimit-reset", "4", "ratelimit-limit", ""),
			after(750*time.Millisecond, ok(get("/"))), limited(get("/")),
			after(1500*time.Millisecond, ok(get("/"))), ok(get("/")), limited(get("/")),
		}},
	{Name: "repeated or underscore-spelled key header is refused", Config: `{"rules":[{"name":"r","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/", "x-user", "a")), limited(get("/", "x-user", "a")),
			// Go's Header.Get reads the first copy, Envoy's inline headers join them,
			// CGI gateways read x_user as x-user: no copy may choose the bucket.
			refused(get("/", "x-user", "a", "x-user", "b")),
			refused(get("/", "x-user", "b", "x-user", "a")),
			refused(get("/", "x_user", "c")),
			refused(get("/", "x-user", "a", "x_user", "c")),
			ok(get("/", "x-user", "a,b")), // one line: its value as sent
		}},
	{Name: "cookie over every Cookie line", Config: `{"rules":[{"name":"r","descriptors":[{"key":"s","cookie":"session"}],"limit":{"requests":1,"unit":"minute"},"missing_key":"deny"}]}`,
		Steps: []Step{
			ok(get("/", "cookie", "theme=dark", "cookie", "a=1; session=u1")),
			limited(get("/", "cookie", "session=u1; theme=light")),
			limited(get("/", "cookie", `session="u1"`)),
			// Spaces around the name: Go's net/http reads u1.
			limited(get("/", "cookie", "session =u1")),
			limited(get("/", "cookie", "a=1;\tsession\t=u1")),
			// Given twice (one parser reads the first, another the last): refused.
			refused(get("/", "cookie", "session=u1", "cookie", "session=u2")),
			refused(get("/", "cookie", "session=u2; session=u1")),
			// A value Go refuses (it then reads the next one): refused.
			refused(get("/", "cookie", `session=x"1; session=u1`)),
			refused(get("/", "cookie", `session=x\1`)),
			refused(get("/", "cookie", "session= u1")),
			// Spellings other parsers read as session.
			refused(get("/", "cookie", "SESSION=u9")),
			refused(get("/", "cookie", "sess%69on=u9")),
			refused(get("/", "cookie", "a=1, session=u9")),
			with(limited(get("/", "cookie", "sessionx=u3; xsession=u3")), "retry-after", ""),
			limited(get("/", "cookie", "session=")),
		}},
	{Name: "query parameter decoded", Config: `{"rules":[{"name":"r","descriptors":[{"key":"u","query_param":"user id"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/x?user+id=bob")),
			limited(get("/x?a=1&user%20id=bob")),
			limited(get("/y?%75ser%20id=b%6Fb#frag")),
			// Given twice, or in a pair Go drops but others read: refused.
			refused(get("/x?user%20id=bob2&user+id=bob")),
			refused(get("/x?user+id=x%zz1&user+id=bob")),
			refused(get("/x?user+id=x%&user+id=bob")),
			refused(get("/x?user+id=bob2;x&user+id=bob")),
			refused(get("/x?a=1;user+id=bob2")),
			refused(get("/x?User+Id=bob2")),
			refused(get("/x?user.id=bob2")),
			refused(get("/x?user%2520id=bob2")),
			ok(get("/x?userid=bob")), ok(get("/x?userid=bob")), // no such parameter: allowed (default missing_key)
		}},
	{Name: "query parameter: spaces around the name, structured names, values not UTF-8", Config: `{"rules":[{"name":"r","descriptors":[{"key":"u","query_param":"user"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/login?user=alice")),
			// "user " is another parameter for Go, Python, Node, Rack and servlets
			// ("user_" for PHP): the key is alice, as the upstream reads it.
			limited(get("/login?user=alice&user%20=bob")),
			limited(get("/login?user+=bob&user=alice")),
			limited(get("/login?user%09=bob&user=alice")),
			limited(get("/login?%09user=bob&user=alice")),
			ok(get("/login?user%20=alice")), // no user for Go either: default missing_key
			// PHP drops leading spaces: " user" is user there.
			refused(get("/login?%20user=bob&user=alice")),
			// PHP, Rack and Express's qs read structured names as user.
			refused(get("/login?user[]=bob")),
			refused(get("/login?user=alice&user[]=bob")),
			refused(get("/login?user%5B0%5D=bob")),
			refused(get("/login?User[name]=bob")),
			refused(get("/login?[user]=bob")),
			refused(get("/login?user=alice&user%00x=bob")), // PHP reads names as C strings
			// Not UTF-8: one U+FFFD value for Python, Node and servlets, many keys for Go.
			refused(get("/login?user=alice%FF")),
			refused(get("/login?user=alice%C0%80")),
			ok(get("/login?user=caf%C3%A9")),
			limited(get("/login?user=caf%c3%a9")),
		}},
	{Name: "client address from the connection", Config: `{"rules":[{"name":"ip","descriptors":[{"key":"remote_address","client_address":true}],"limit":{"requests":1,"unit":"hour"},"missing_key":"deny"}]}`,
		Steps: []Step{
			ok(from("10.0.0.1:1000", get("/"))),
			limited(from("10.0.0.1:2000", get("/"))),
			// X-Forwarded-For is ignored without trusted hops: no spoofing.
			limited(from("10.0.0.1:2000", get("/", "x-forwarded-for", "1.2.3.4"))),
			ok(from("[2001:db8::1]:443", get("/"))),
			limited(from("[2001:0db8:0:0::1]:80", get("/"))),
			ok(from("10.0.0.2:1", get("/"))),
			limited(from("[::ffff:10.0.0.2]:1", get("/"))),
		}},
	{Name: "X-Forwarded-For with one trusted hop", Config: `{"xff_num_trusted_hops":1,"rules":[{"name":"ip","descriptors":[{"key":"remote_address","client_address":true}],"limit":{"requests":1,"unit":"hour"},"missing_key":"deny"}]}`,
		Steps: []Step{
			ok(from("10.0.0.9:1", get("/", "x-forwarded-for", "203.0.113.7"))),
			// Spoofed entries on the left do not change the key: the trusted proxy
			// appended the last one.
			limited(from("10.0.0.9:1", get("/", "x-forwarded-for", "1.1.1.1, 203.0.113.7"))),
			limited(from("10.0.0.8:1", get("/", "x-forwarded-for", "9.9.9.9,2.2.2.2", "x-forwarded-for", "203.0.113.7"))),
			ok(from("10.0.0.9:1", get("/", "x-forwarded-for", "203.0.113.7, 198.51.100.1"))),
			// No XFF: the connection's address (Envoy's fallback).
			ok(from("10.0.0.9:1", get("/"))),
			limited(from("10.0.0.9:2", get("/"))),
			// A malformed trusted entry names no client: refused, not a bucket.
			refused(from("10.0.0.7:1", get("/", "x-forwarded-for", "1.2.3.4, not-an-ip"))),
			refused(from("10.0.0.7:1", get("/", "x-forwarded-for", "1.2.3.4, 5.6.7.8:80"))),
			refused(from("10.0.0.7:1", get("/", "x_forwarded_for", "9.9.9.9", "x-forwarded-for", "1.2.3.4"))),
			// One client, one spelling.
			ok(from("10.0.0.7:1", get("/", "x-forwarded-for", "1.2.3.4, ::ffff:198.51.100.9"))),
			limited(from("10.0.0.7:1", get("/", "x-forwarded-for", "198.51.100.9"))),
			ok(from("10.0.0.7:1", get("/", "x-forwarded-for", "2001:db8::1"))),
			limited(from("10.0.0.7:1", get("/", "x-forwarded-for", "2001:DB8:0::0:1"))),
			limited(from("10.0.0.7:1", get("/", "x-forwarded-for", "2001:db8::1%25eth0"))),
		}},
	{Name: "X-Forwarded-For with two trusted hops", Config: `{"xff_num_trusted_hops":2,"rules":[{"name":"ip","descriptors":[{"key":"remote_address","client_address":true}],"limit":{"requests":1,"unit":"hour"}}]}`,
		Steps: []Step{
			ok(from("10.0.0.9:1", get("/", "x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1"))),
			limited(from("10.0.0.9:1", get("/", "x-forwarded-for", "7.7.7.7,203.0.113.7,10.1.1.2"))),
			// Too few entries: the connection's address.
			ok(from("10.0.0.9:1", get("/", "x-forwarded-for", "203.0.113.7"))),
			limited(from("10.0.0.9:5", get("/", "x-forwarded-for", "203.0.113.8"))),
		}},
	{Name: "path and method composed", Config: `{"rules":[{"name":"r","descriptors":[{"key":"path","path":true},{"key":"method","method":true}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/a?x=1")), limited(get("/a?x=2")), ok(get("/b")),
			ok(Request{Method: "POST", Path: "/a"}), limited(Request{Method: "POST", Path: "/a"}),
		}},
	{Name: "missing key: anonymous bucket", Config: `{"rules":[{"name":"r","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":2,"unit":"minute"},"missing_key":"anonymous"}]}`,
		Steps: []Step{
			ok(get("/")), ok(get("/", "x-user", "")), limited(get("/")),
			ok(get("/", "x-user", "a")),
		}},
	{Name: "missing key: deny", Config: `{"rules":[{"name":"r","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":2,"unit":"minute"},"missing_key":"deny"}]}`,
		Steps: []Step{
			with(limited(get("/")), "retry-after", "", "ratelimit-limit", ""),
			ok(get("/", "x-user", "a")),
		}},
	{Name: "missing key: allow", Config: rule3ps,
		Steps: []Step{ok(get("/")), ok(get("/")), ok(get("/")), ok(get("/")), ok(get("/"))}},
	{Name: "overrides", Config: `{"rules":[{"name":"r","descriptors":[{"key":"consumer","header":"x-consumer"},{"key":"m","method":true}],
		"limit":{"requests":1,"unit":"minute"},
		"overrides":[{"values":{"consumer":"gold-*"},"limit":{"requests":3,"unit":"minute"}},{"values":{"consumer":"ops","m":"GET"},"unlimited":true}]}],"headers_on_allowed":true}`,
		Steps: []Step{
			ok(get("/", "x-consumer", "bronze")), limited(get("/", "x-consumer", "bronze")),
			with(ok(get("/", "x-consumer", "gold-1")), "ratelimit-limit", "3, 3;w=60"), ok(get("/", "x-consumer", "gold-1")), ok(get("/", "x-consumer", "gold-1")), limited(get("/", "x-consumer", "gold-1")),
			ok(get("/", "x-consumer", "gold-2")),
			with(ok(get("/", "x-consumer", "ops")), "ratelimit-limit", ""), ok(get("/", "x-consumer", "ops")), ok(get("/", "x-consumer", "ops")),
			ok(Request{Method: "POST", Headers: [][2]string{{"x-consumer", "ops"}}}), limited(Request{Method: "POST", Headers: [][2]string{{"x-consumer", "ops"}}}),
			// "gold-" prefix is case-sensitive.
			ok(get("/", "x-consumer", "Gold-1")), limited(get("/", "x-consumer", "Gold-1")),
		}},
	{Name: "match conditions", Config: `{"rules":[{"name":"r","match":{"prefix":"/api","methods":["POST"],"headers":[{"name":"x-tier","exact":"free"},{"name":"x-internal","present":true,"invert":true}]},
		"descriptors":[{"key":"k","value":"free-posts"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(Request{Method: "POST", Path: "/api/x", Headers: [][2]string{{"x-tier", "free"}}}),
			limited(Request{Method: "POST", Path: "/api/y", Headers: [][2]string{{"x-tier", "free"}}}),
			ok(Request{Method: "GET", Path: "/api/y", Headers: [][2]string{{"x-tier", "free"}}}),
			ok(Request{Method: "POST", Path: "/other", Headers: [][2]string{{"x-tier", "free"}}}),
			ok(Request{Method: "POST", Path: "/api/y", Headers: [][2]string{{"x-tier", "paid"}}}),
			ok(Request{Method: "POST", Path: "/api/y", Headers: [][2]string{{"x-tier", "free"}, {"x-internal", "1"}}}),
		}},
	{Name: "shadow", Config: `{"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"minute"},"shadow":true}],"headers_on_allowed":true}`,
		Steps: []Step{
			with(ok(get("/")), "ratelimit-remaining", "0"),
			with(ok(get("/")), "retry-after", ""), ok(get("/")),
		}},
	{Name: "grpc", Config: `{"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/pkg.Svc/M", "content-type", "application/grpc")),
			{Req: get("/pkg.Svc/M", "content-type", "application/grpc"), GRPCStatus: 8, Headers: map[string]string{"retry-after": "60"}},
			limited(get("/pkg.Svc/M", "content-type", "application/grpc-web")),
			// Not gRPC to Envoy (Grpc::Common::hasGrpcContentType): an HTTP reply.
			limited(get("/pkg.Svc/M", "content-type", "application/grpc;charset=utf-8")),
			{Req: get("/pkg.Svc/M", "content-type", "application/grpc+proto"), GRPCStatus: 8},
		}},
	{Name: "grpc refused key", Config: `{"rules":[{"name":"r","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			{Req: get("/pkg.Svc/M", "content-type", "application/grpc", "x-user", "a", "x-user", "b"), GRPCStatus: 3},
		}},
	{Name: "grpc disabled, custom status", Config: `{"grpc":false,"status":503,"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/")), {Req: get("/"), Status: 503},
		}},
	{Name: "several rules: the tightest is reported", Config: `{"headers_on_allowed":true,"rules":[
		{"name":"global","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":100,"unit":"minute"}},
		{"name":"user","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":2,"unit":"minute"}}]}`,
		Steps: []Step{
			with(ok(get("/", "x-user", "a")), "ratelimit-limit", "2, 2;w=60", "ratelimit-remaining", "1"),
			with(ok(get("/")), "ratelimit-limit", "100, 100;w=60", "ratelimit-remaining", "98"),
			ok(get("/", "x-user", "a")),
			with(limited(get("/", "x-user", "a")), "ratelimit-limit", "2, 2;w=60", "retry-after", "30"),
			// A rejected request takes no token from any rule: the global bucket did not pay.
			with(ok(get("/")), "ratelimit-remaining", "96"),
		}},
	{Name: "Retry-After is when every rule would pass", Config: `{"rules":[
		{"name":"second","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"second"}},
		{"name":"hour","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"hour"}}]}`,
		Steps: []Step{
			ok(get("/")),
			with(limited(get("/")), "retry-after", "3600", "ratelimit-limit", "1, 1;w=3600"),
			with(after(time.Second, limited(get("/"))), "retry-after", "3599"),
			// Retrying when told passes both rules (the 1/s token was not spent by the
			// rejected retries).
			with(after(3599*time.Second, ok(get("/"))), "retry-after", ""),
			with(limited(get("/")), "retry-after", "3600"),
		}},
	{Name: "Retry-After with an allowing and a rejecting rule", Config: `{"rules":[
		{"name":"hour","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":2,"unit":"hour"}},
		{"name":"user","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/", "x-user", "a")),
			with(limited(get("/", "x-user", "a")), "retry-after", "60"),
			// The hourly rule still has its second token when the minute is over.
			after(60*time.Second, ok(get("/", "x-user", "a"))),
			with(limited(get("/", "x-user", "b")), "retry-after", "1740"),
		}},
	// Paths (README "Paths"): every spelling of a path is one bucket, an ambiguous
	// path takes its most decoded reading, and a rule matches if any reading does.
	{Name: "path descriptor in canonical form", Config: `{"rules":[{"name":"r","descriptors":[{"key":"path","path":true}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/login")),
			limited(get("//login")), limited(get("/x/../login")), limited(get("/x/%2e%2e/login")),
			limited(get("/%6Cogin")), limited(get("/login?next=/x")),
			ok(get("/Login")), // case kept without ignore_case
			ok(get("/a/b")),
			limited(get("/a%2Fb")), limited(get("/a%2fb")), limited(get("/a;v=1/b")),
		}},
	{Name: "path parameters literal, case ignored", Config: `{"path_normalization":{"path_params":"literal","ignore_case":true},"rules":[{"name":"r","descriptors":[{"key":"path","path":true}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/a/b")), ok(get("/a;v=1/b")), limited(get("/A;V=1/B")),
			limited(get("/LOGIN/../a/B")),
		}},
	{Name: "rule matched under every reading of the path", Config: `{"rules":[{"name":"admin","match":{"prefix":"/admin"},"descriptors":[{"key":"k","value":"admin"}],"limit":{"requests":1,"unit":"minute"},"missing_key":"deny"}]}`,
		Steps: []Step{
			ok(get("/admin/x")),
			limited(get("//admin/y")), limited(get("/x/../admin")), limited(get("/%61dmin/z")),
			limited(get("/admin;jsessionid=1/x")), limited(get("/public%2F..%2Fadmin")),
			// Not the rule's path: no rule applies, the request passes.
			ok(get("/public")), ok(get("/ADMIN")), ok(get("/public")),
			// A prefix is a string prefix, as Envoy's route prefix.
			limited(get("/administrator")),
		}},
	{Name: "exact path and regex rules with methods", Config: `{"rules":[
		{"name":"login","match":{"path":"/login","methods":["POST"]},"descriptors":[{"key":"k","value":"login"}],"limit":{"requests":1,"unit":"minute"}},
		{"name":"api","match":{"regex":"^/api/v[0-9]+/"},"descriptors":[{"key":"m","method":true}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(Request{Method: "POST", Path: "/login"}),
			limited(Request{Method: "POST", Path: "/login?x=1"}),
			ok(get("/login")), ok(Request{Method: "POST", Path: "/login/x"}),
			ok(get("/api/v1/a")), limited(get("/api/v2/b")), ok(Request{Method: "PUT", Path: "/api/v2/b"}),
			ok(get("/api/vx/")), ok(get("/x/api/v1/")),
		}},
	{Name: "header conditions on repeated and underscore-spelled headers", Config: `{"rules":[{"name":"r","match":{"headers":[{"name":"x-tier","exact":"free"},{"name":"x-internal","present":true,"invert":true}]},
		"descriptors":[{"key":"k","value":"free"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			refused(get("/", "x-tier", "free", "x-tier", "free")),
			refused(get("/", "x-tier", "free", "x_tier", "paid")),
			ok(get("/", "x-tier", "free")),
			limited(get("/", "x-tier", "free")),
			// present sees a repeated header as present (the rule does not apply), and
			// refuses an underscore spelling.
			ok(get("/", "x-tier", "free", "x-internal", "1", "x-internal", "2")),
			refused(get("/", "x-tier", "free", "x_internal", "1")),
			ok(get("/", "x-tier", "paid")),
			ok(get("/")),
		}},
	{Name: "every rule in shadow mode", Config: `{"shadow":true,"headers_on_allowed":true,"rules":[{"name":"r","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			with(ok(get("/", "x-user", "a")), "ratelimit-remaining", "0"),
			with(ok(get("/", "x-user", "a")), "retry-after", ""),
			ok(get("/", "x-user", "a")),
			// Shadow mode never rejects, an ambiguous key included.
			ok(get("/", "x-user", "a", "x-user", "b")),
		}},
	{Name: "rules on different paths keep separate buckets", Config: `{"rules":[
		{"name":"a","match":{"prefix":"/a"},"descriptors":[{"key":"k","value":"x"}],"limit":{"requests":1,"unit":"minute"}},
		{"name":"b","match":{"prefix":"/b"},"descriptors":[{"key":"k","value":"x"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			ok(get("/a")), ok(get("/b")), limited(get("/a/1")), limited(get("/b/1")), ok(get("/c")),
			after(time.Minute, ok(get("/a"))), ok(get("/b")),
		}},
	{Name: "headers off", Config: `{"headers":"none","headers_on_allowed":true,"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"minute"}}]}`,
		Steps: []Step{
			with(ok(get("/")), "ratelimit-limit", ""),
			with(limited(get("/")), "ratelimit-limit", "", "retry-after", "60"),
		}},
}

// Check compares step i's expectations with what a client got: status (200 when the
// request reached the upstream), gRPC status (-1 for none) and response headers.
func Check(t *testing.T, i int, s Step, status, grpc int, headers map[string]string) {
	t.Helper()
	msg := fmt.Sprintf("step %d (%+v)", i, s.Req)
	if s.GRPCStatus != 0 {
		assert.Equal(t, s.GRPCStatus, grpc, msg)
	} else {
		assert.Equal(t, s.Status, status, msg)
		assert.Equal(t, -1, grpc, msg)
	}
	for k, want := range s.Headers {
		got, ok := headers[k]
		if want == "" {
			assert.False(t, ok, "%s: header %s = %q, want none", msg, k, got)
		} else {
			assert.Equal(t, want, got, "%s: header %s", msg, k)
		}
	}
}
