package engine

import (
	"strconv"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Response is a rejection: status, headers, and either the JSON body (HTTP) or the
// grpc-status and grpc-message (gRPC requests when the config enables it).
type Response struct {
	Status      int
	Headers     []abi.Pair
	Body        []byte
	GRPCStatus  uint32 // abi.GrpcStatusNone for an HTTP reply
	GRPCMessage string
	Details     string // Envoy response code details
}

// Bodies of rejections. Fixed strings: nothing from the request is echoed.
var (
	bodyLimited    = []byte(`{"error":"rate_limited","message":"too many requests"}`)
	bodyMissingKey = []byte(`{"error":"rate_limited","message":"request has no rate limit key"}`)
	// bodyRefused answers a request whose rate limit key is given twice or spelled
	// so that upstreams read it differently (Verdict.Refused).
	bodyRefused = []byte(`{"error":"bad_request","message":"ambiguous rate limit key"}`)
	// bodyServiceError answers failure_mode_deny's rejections.
	bodyServiceError = []byte(`{"error":"rate_limit_service_unavailable","message":"rate limit service unavailable"}`)
)

// GRPCResourceExhausted is grpc-status 8, what a rejected gRPC request gets (Envoy's
// ratelimit filter sends it with rate_limited_as_resource_exhausted; its default
// mapping of 429 would be 14 UNAVAILABLE, which clients retry at once).
const GRPCResourceExhausted = 8

// GRPCInvalidArgument is grpc-status 3, what a gRPC request refused for an ambiguous
// key gets: retrying it unchanged cannot succeed.
const GRPCInvalidArgument = 3

// StatusRefused is the HTTP status of a request refused for an ambiguous key.
const StatusRefused = 400

// GRPCUnavailable is grpc-status 14, what a gRPC request rejected by the global mode's
// failure_mode_deny gets: the service's outage is transient, and the request may be
// retried.
const GRPCUnavailable = 14

// Reject builds the reply for a limited verdict. headers is reused.
func Reject(cfg *config.Config, r *Request, v *Verdict, headers []abi.Pair) Response {
	resp := Response{Status: cfg.Status, GRPCStatus: abi.GrpcStatusNone, Details: "meshplug_ratelimit_limited",
		Body: bodyLimited, GRPCMessage: "too many requests"}
	switch {
	case v.ServiceError:
		resp.Status, resp.Body, resp.GRPCMessage, resp.Details = cfg.Global.StatusOnError, bodyServiceError,
			"rate limit service unavailable", "meshplug_ratelimit_service_error"
	case v.Refused != "":
		resp.Status, resp.Body, resp.GRPCMessage, resp.Details = StatusRefused, bodyRefused, "ambiguous rate limit key",
			"meshplug_ratelimit_ambiguous_key"
	case v.MissingKey:
		resp.Body, resp.GRPCMessage, resp.Details = bodyMissingKey, "request has no rate limit key", "meshplug_ratelimit_missing_key"
	}
	headers = AppendHeaders(headers[:0], cfg, v)
	if cfg.GRPC && r.GRPC {
		resp.GRPCStatus, resp.Body = GRPCResourceExhausted, []byte(resp.GRPCMessage)
		switch {
		case v.ServiceError:
			resp.GRPCStatus = GRPCUnavailable
		case v.Refused != "":
			resp.GRPCStatus = GRPCInvalidArgument
		}
	} else {
		headers = append(headers, abi.Pair{Key: "content-type", Value: "application/json"})
	}
	resp.Headers = headers
	return resp
}

// AppendHeaders appends the rate limit headers of v to dst: Retry-After when v is
// limited by a bucket, and, unless cfg.Headers is HeadersNone, the limit, remaining
// and reset of v.Report:
//
//	RateLimit-Limit: 100, 100;w=60      (requests per window, then the quota policy;
//	                                     w only when the period is whole seconds)
//	RateLimit-Remaining: 41             (requests the bucket allows now)
//	RateLimit-Reset: 35                 (seconds until the bucket is full again)
//
// with the names of draft-ietf-httpapi-ratelimit-headers-03, or X-RateLimit-* (the
// names Envoy's ratelimit and local_ratelimit filters write with
// enable_x_ratelimit_headers: DRAFT_VERSION_03). Seconds are rounded up.
//
// See https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-03
// and Envoy's source/extensions/filters/http/common/ratelimit_headers.h.
func AppendHeaders(dst []abi.Pair, cfg *config.Config, v *Verdict) []abi.Pair {
	if v.Report == nil {
		return dst
	}
	if v.Limited {
		dst = append(dst, abi.Pair{Key: "retry-after", Value: strconv.FormatInt(max(ceilSeconds(v.Outcome.RetryAfter), 1), 10)})
	}
	var limit, remaining, reset string
	switch cfg.Headers {
	case config.HeadersNone:
		return dst
	case config.HeadersXRateLimit:
		limit, remaining, reset = "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"
	default:
		limit, remaining, reset = "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"
	}
	return append(dst,
		abi.Pair{Key: limit, Value: v.Report.Header},
		abi.Pair{Key: remaining, Value: strconv.FormatInt(v.Outcome.Remaining, 10)},
		abi.Pair{Key: reset, Value: strconv.FormatInt(ceilSeconds(v.Outcome.Reset), 10)})
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
