package engine

import (
	"crypto/sha256"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/jwt"
)

// FetchReason says why a JWKS fetch is considered.
type FetchReason uint8

// Fetch reasons.
const (
	FetchNoKeys     FetchReason = iota // no keys yet (first use)
	FetchRefresh                       // keys near or past expiry (background, from the tick)
	FetchUnknownKid                    // a token names a kid the current set lacks
)

// JWKSState is the pure state machine of one remote provider's JWKS in one worker VM.
//
// Lifecycle: ShouldFetch(now, reason) says whether to start a fetch; the glue then
// calls OnFetchStart(now), dispatches the HTTP callout and reports OnFetchSuccess or
// OnFetchFailure. Keys are fresh for cache_duration after a success and refreshed
// refresh_before that; after a failure the next attempt waits base*2^(n-1) capped at
// max_interval; keys from the last success are kept (stale) through failures; an
// unknown kid refetches at most once per min_refetch_interval.
//
// Caveat: every worker VM has its own state and fetches on its own.
type JWKSState struct {
	cfg *config.RemoteJWKS

	keys       *jwt.KeySet
	generation uint64 // bumped whenever the key set changes
	bodyHash   [32]byte
	fetchedAt  time.Time
	expiresAt  time.Time

	inFlight    bool
	lastAttempt time.Time
	failures    int
	retryAt     time.Time // backoff: no attempt before this
	lastErr     error
}

// NewJWKSState returns an empty state for a remote provider.
func NewJWKSState(cfg *config.RemoteJWKS) *JWKSState { return &JWKSState{cfg: cfg} }

// Keys returns the current (possibly stale) keys, nil before the first success.
func (s *JWKSState) Keys() *jwt.KeySet { return s.keys }

// Generation changes whenever Keys changes (cached tokens of older generations are
// re-verified).
func (s *JWKSState) Generation() uint64 { return s.generation }

// Failures is the number of consecutive failed fetches; LastError the last one.
func (s *JWKSState) Failures() int    { return s.failures }
func (s *JWKSState) LastError() error { return s.lastErr }

// InFlight reports whether a fetch was started and not yet reported.
func (s *JWKSState) InFlight(now time.Time) bool {
	// A fetch the glue never reported (lost callback) is forgotten after twice the
	// timeout plus a second, so the provider cannot be wedged forever.
	return s.inFlight && now.Before(s.lastAttempt.Add(2*s.cfg.Timeout+time.Second))
}

// Stale reports whether keys exist but are past cache_duration.
func (s *JWKSState) Stale(now time.Time) bool { return s.keys != nil && !now.Before(s.expiresAt) }

// NeedsRefresh reports whether a background refresh is due: no keys, or within
// refresh_before of expiry; never while a fetch is in flight or during backoff.
func (s *JWKSState) NeedsRefresh(now time.Time) bool {
	return s.ShouldFetch(now, FetchRefresh)
}

// ShouldFetch reports whether a fetch should start now for reason.
func (s *JWKSState) ShouldFetch(now time.Time, reason FetchReason) bool {
	if s.InFlight(now) || now.Before(s.retryAt) {
		return false
	}
	if s.keys == nil {
		return true
	}
	switch reason {
	case FetchUnknownKid:
		return s.lastAttempt.IsZero() || !now.Before(s.lastAttempt.Add(s.cfg.MinRefetchInterval))
	default:
		return !now.Before(s.expiresAt.Add(-s.cfg.RefreshBefore))
	}
}

// OnFetchStart records that a fetch was dispatched.
func (s *JWKSState) OnFetchStart(now time.Time) {
	s.inFlight = true
	s.lastAttempt = now
}

// OnFetchSuccess parses a 200 response body. A body that does not parse counts as a
// failure (the error is returned and the old keys are kept).
func (s *JWKSState) OnFetchSuccess(body []byte, now time.Time) error {
	ks, err := jwt.ParseJWKS(body)
	if err != nil {
		s.OnFetchFailure(now, err)
		return err
	}
	h := sha256.Sum256(body)
	if s.keys == nil || h != s.bodyHash {
		s.keys, s.bodyHash = ks, h
		s.generation++
	}
	s.inFlight = false
	s.fetchedAt, s.expiresAt = now, now.Add(s.cfg.CacheDuration)
	s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
	return nil
}

// OnFetchFailure records a failed fetch (transport error, timeout, non-200 status,
// bad body) and schedules the next attempt with exponential backoff.
func (s *JWKSState) OnFetchFailure(now time.Time, err error) {
	s.inFlight = false
	s.failures++
	s.lastErr = err
	d := s.cfg.BackoffBase
	for i := 1; i < s.failures && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > s.cfg.BackoffMax {
		d = s.cfg.BackoffMax
	}
	s.retryAt = now.Add(d)
}

// RetryAt is when backoff ends (zero if not backing off).
func (s *JWKSState) RetryAt() time.Time { return s.retryAt }

// ExpiresAt is when the current keys go stale.
func (s *JWKSState) ExpiresAt() time.Time { return s.expiresAt }

// KeySource gives the engine each provider's keys and fetch policy.
type KeySource interface {
	// Keys returns provider p's current keys (nil if none yet) and their generation.
	Keys(p *config.Provider) (*jwt.KeySet, uint64)
	// ShouldFetch reports whether the glue should fetch p's JWKS now for reason;
	// Fetching whether a fetch is already under way. Both are false for local JWKS.
	ShouldFetch(p *config.Provider, now time.Time, reason FetchReason) bool
	Fetching(p *config.Provider, now time.Time) bool
}

// KeyStore is the KeySource of one worker VM: static keys for local_jwks providers, a
// JWKSState for each remote_jwks provider.
type KeyStore struct {
	states []*JWKSState // by Provider.Index; nil for local providers
	local  []*jwt.KeySet
}

// NewKeyStore builds the key store for cfg.
func NewKeyStore(cfg *config.Config) *KeyStore {
	ks := &KeyStore{states: make([]*JWKSState, len(cfg.ProviderList)), local: make([]*jwt.KeySet, len(cfg.ProviderList))}
	for i, p := range cfg.ProviderList {
		if p.RemoteJWKS != nil {
			ks.states[i] = NewJWKSState(p.RemoteJWKS)
		} else {
			ks.local[i] = p.LocalJWKS
		}
	}
	return ks
}

// State returns the JWKS state of a remote provider (nil for local providers).
func (ks *KeyStore) State(p *config.Provider) *JWKSState { return ks.states[p.Index] }

// Keys implements KeySource.
func (ks *KeyStore) Keys(p *config.Provider) (*jwt.KeySet, uint64) {
	if s := ks.states[p.Index]; s != nil {
		return s.keys, s.generation
	}
	return ks.local[p.Index], 0
}

// ShouldFetch implements KeySource.
func (ks *KeyStore) ShouldFetch(p *config.Provider, now time.Time, reason FetchReason) bool {
	s := ks.states[p.Index]
	return s != nil && s.ShouldFetch(now, reason)
}

// Fetching implements KeySource.
func (ks *KeyStore) Fetching(p *config.Provider, now time.Time) bool {
	s := ks.states[p.Index]
	return s != nil && s.InFlight(now)
}

// DueRefreshes appends the remote providers whose background refresh is due (call it
// from the tick).
func (ks *KeyStore) DueRefreshes(cfg *config.Config, now time.Time, dst []*config.Provider) []*config.Provider {
	for i, s := range ks.states {
		if s != nil && s.keys != nil && s.NeedsRefresh(now) {
			dst = append(dst, cfg.ProviderList[i])
		}
	}
	return dst
}
