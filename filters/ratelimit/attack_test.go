package main_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/ratelimit/engine/enginetest"
	"github.com/meshplug/meshplug/testenv"
)

// TestAttackerChoosingKeysGetsNoMoreThanTheLimit is the attack through
// ratelimit.wasm, with the classes around it: a client whose per-IP bucket is empty
// sends requests whose other keys it chooses freely (new paths for a per-(IP, path)
// rule, new users for a rule the per-IP rule does not cover, each user spending what
// its own rule allows) to crowd its bucket out of a small table (max_keys 64: 32
// groups of 8). Whatever it sends, no more than the per-IP limit passes on the
// per-IP-limited paths: groups are chosen under a secret seed, rejected requests
// write nothing, and eviction forgets the bucket missing the fewest requests.
func TestAttackerChoosingKeysGetsNoMoreThanTheLimit(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Start)
	h := start(t, 2, clock, `{"max_keys":64,"rules":[
		{"name":"ip","match":{"prefix":"/api"},"descriptors":[{"key":"ip","client_address":true}],"limit":{"requests":100,"unit":"hour"}},
		{"name":"ip_path","match":{"prefix":"/api"},"descriptors":[{"key":"ip","client_address":true},{"key":"p","path":true}],"limit":{"requests":100,"unit":"hour"}},
		{"name":"login","match":{"prefix":"/login"},"descriptors":[{"key":"u","query_param":"user"}],"limit":{"requests":5,"unit":"hour"}}]}`)
	const attacker = "203.0.113.66:4000"
	passed := 0
	send := func(path string, i int) int {
		resp := h.MustDo(t, testenv.Request{Path: path, SourceAddress: attacker, Worker: i % 2})
		return resp.Status
	}
	for i := 0; i < 100; i++ {
		if send(fmt.Sprint("/api/warmup/", i), i) == 200 {
			passed++
		}
	}
	require.Equal(t, 100, passed)
	// Collision targeting: paths whose (IP, path) bucket would share the per-IP
	// bucket's group under the unkeyed FNV-1a the table used to hash with, each
	// emptied, to crowd the per-IP bucket out (the 397 requests in 4 s).
	apiPassed := 0
	ipGroup := fnvGroup(bucketKey("ip", "203.0.113.66"), 32)
	targeted := 0
	for n := 0; targeted < 12; n++ {
		path := fmt.Sprint("/api/t", n)
		if fnvGroup(bucketKey("ip_path", "203.0.113.66", path), 32) != ipGroup {
			continue
		}
		targeted++
		for j := 0; j < 101; j++ {
			if send(path, j) == 200 {
				apiPassed++
			}
		}
	}
	assert.Zero(t, apiPassed, "requests past an empty per-IP bucket (collision targeting)")
	// Over 4 s, 3000 requests.
	loginPassed := 0
	for i := 0; i < 3000; i++ {
		if i%300 == 0 {
			clock.Advance(400 * time.Millisecond)
		}
		var path string
		switch i % 3 {
		case 0: // a new path on the limited prefix
			path = fmt.Sprint("/api/x", i)
		case 1: // a new user, five requests each over time (the login rule's limit)
			path = fmt.Sprint("/login?user=u", i/15)
		case 2: // the same spelling classes the reader refuses or folds
			path = fmt.Sprintf("/api/%d?a=%d", i%7, i)
		}
		status := send(path, i)
		switch {
		case status == 200 && path[1] == 'a':
			apiPassed++
		case status == 200:
			loginPassed++
		}
	}
	assert.Zero(t, apiPassed, "requests past an empty per-IP bucket (flood)")
	assert.Greater(t, loginPassed, 500, "the attacker did create many buckets")
	evicted, _ := h.Metric("meshplug.ratelimit.keys_evicted")
	t.Logf("login requests passed: %d, buckets evicted: %d", loginPassed, evicted)
	assert.Positive(t, evicted, "the table was crowded")
	// When the hour is over, the client has its limit again, and only it.
	clock.Advance(time.Hour)
	apiPassed = 0
	for i := 0; i < 150; i++ {
		if send(fmt.Sprint("/api/after/", i), i) == 200 {
			apiPassed++
		}
	}
	assert.Equal(t, 100, apiPassed)
}

// bucketKey is the bucket key the engine used to build, before the seeded table, for
// a rule under a 100/hour limit (rule name, 0, per entry 1, uvarint length, value; 0,
// the limit's ID as it was then): what a client could hash offline.
func bucketKey(rule string, values ...string) []byte {
	k := append([]byte(rule), 0)
	for _, v := range values {
		k = append(append(append(k, 1), byte(len(v))), v...)
	}
	return append(append(k, 0), "100/3600000000000/100"...)
}

// fnvGroup is the group the table chose before it had a secret seed.
func fnvGroup(key []byte, groups uint64) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range key {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h % groups
}
