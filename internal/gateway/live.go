package gateway

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed live.html
var liveHTML []byte

// LiveView keeps the most recent decisions and per-user totals and serves them: GET /
// is a small page (live.html: plain HTML and JavaScript, no build step) that polls GET
// /decisions.json every second. Set Config.OnDecision to its Record. Serve it on its
// own listener (like Envoy's admin interface), never on the gateway's, so that it
// shadows no upstream path.
type LiveView struct {
	mu     sync.Mutex
	max    int
	recent []Decision // newest last
	users  map[string]*UserStats
}

// UserStats are one user's totals. Kinds: allowed (reached an upstream), denied (401,
// 403), limited (429), fault (a fault filter's abort), error (anything else).
type UserStats struct {
	User     string         `json:"user"`
	Kinds    map[string]int `json:"kinds"`
	Clusters map[string]int `json:"clusters"` // upstream cluster → requests (the canary split)
	Last     time.Time      `json:"last"`
}

// NewLiveView keeps the last n decisions (default 50).
func NewLiveView(n int) *LiveView {
	if n <= 0 {
		n = 50
	}
	return &LiveView{max: n, users: map[string]*UserStats{}}
}

// Kind classifies a decision for the live view.
func Kind(d Decision) string {
	switch {
	case d.LocalReply == "" && d.Status > 0 && d.Status < 500:
		return "allowed"
	case d.Status == 429:
		return "limited"
	case d.Status == 401 || d.Status == 403:
		return "denied"
	case strings.HasPrefix(d.LocalReply, "fault"):
		return "fault"
	}
	return "error"
}

// Record adds a decision.
func (l *LiveView) Record(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recent) == l.max {
		copy(l.recent, l.recent[1:])
		l.recent = l.recent[:l.max-1]
	}
	l.recent = append(l.recent, d)
	user := d.Consumer
	if user == "" {
		user = "(anonymous)"
	}
	u, ok := l.users[user]
	if !ok {
		if len(l.users) >= 1000 { // bounded: a flood of new names cannot grow it
			return
		}
		u = &UserStats{User: user, Kinds: map[string]int{}, Clusters: map[string]int{}}
		l.users[user] = u
	}
	u.Kinds[Kind(d)]++
	if d.Cluster != "" && d.LocalReply == "" {
		u.Clusters[d.Cluster]++
	}
	u.Last = d.Time
}

type liveDecision struct {
	Decision
	Kind string `json:"kind"`
	Ms   int64  `json:"ms"`
}

// ServeHTTP serves the page and the JSON.
func (l *LiveView) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		w.Header().Set("content-type", "text/html; charset=utf-8")
		w.Header().Set("content-security-policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'")
		_, _ = w.Write(liveHTML)
	case "/decisions.json":
		l.mu.Lock()
		out := struct {
			Recent []liveDecision `json:"recent"`
			Users  []UserStats    `json:"users"`
		}{}
		for i := len(l.recent) - 1; i >= 0; i-- {
			d := l.recent[i]
			out.Recent = append(out.Recent, liveDecision{d, Kind(d), d.Duration.Milliseconds()})
		}
		for _, u := range l.users {
			c := *u
			c.Kinds, c.Clusters = clone(u.Kinds), clone(u.Clusters)
			out.Users = append(out.Users, c)
		}
		l.mu.Unlock()
		sort.Slice(out.Users, func(i, j int) bool { return out.Users[i].User < out.Users[j].User })
		w.Header().Set("content-type", "application/json")
		w.Header().Set("cache-control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	default:
		http.NotFound(w, r)
	}
}

func clone(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
