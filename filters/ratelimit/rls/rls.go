// Package rls encodes the request and decodes the response of Envoy's rate limit
// service protocol, envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, by
// hand with protowire: the guest links neither the generated message types nor the
// protobuf runtime's reflection, which keeps ratelimit.wasm small and the per-request
// cost to a few appends. rls_test.go checks both directions against go-control-plane's
// generated types.
//
// Only the fields the filter uses are read; unknown fields are skipped (proto3
// forward compatibility), and a malformed message is an error (the filter's failure
// mode then applies).
//
// See https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/ratelimit/v3/rls.proto
// and envoy/extensions/common/ratelimit/v3/ratelimit.proto.
package rls

import (
	"errors"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Service and Method name the gRPC method the filter calls.
const (
	Service = "envoy.service.ratelimit.v3.RateLimitService"
	Method  = "ShouldRateLimit"
)

// Code is RateLimitResponse.Code.
type Code uint8

const (
	CodeUnknown   Code = 0
	CodeOK        Code = 1
	CodeOverLimit Code = 2
)

// Unit is RateLimitResponse.RateLimit.Unit.
type Unit uint8

const (
	UnitUnknown Unit = 0
	UnitSecond  Unit = 1
	UnitMinute  Unit = 2
	UnitHour    Unit = 3
	UnitDay     Unit = 4
	UnitMonth   Unit = 5
	UnitYear    Unit = 6
	UnitWeek    Unit = 7
)

// Seconds is the length of the unit's window in seconds (0 for unknown; months and years
// as 30 and 365 days, only for the RateLimit-Limit quota policy).
func (u Unit) Seconds() int64 {
	switch u {
	case UnitSecond:
		return 1
	case UnitMinute:
		return 60
	case UnitHour:
		return 3600
	case UnitDay:
		return 86400
	case UnitWeek:
		return 7 * 86400
	case UnitMonth:
		return 30 * 86400
	case UnitYear:
		return 365 * 86400
	}
	return 0
}

// Entry is one RateLimitDescriptor.Entry.
type Entry struct{ Key, Value string }

// AppendRequest appends a RateLimitRequest{domain, descriptors, hits_addend} to dst.
// descriptors[i] is the entries of descriptor i.
//
// Field numbers: RateLimitRequest domain=1, descriptors=2, hits_addend=3;
// RateLimitDescriptor entries=1; Entry key=1, value=2.
func AppendRequest(dst []byte, domain string, descriptors [][]Entry, hitsAddend uint32) []byte {
	dst = appendString(dst, 1, domain)
	for _, d := range descriptors {
		n := 0
		for _, e := range d {
			n += entrySize(e)
		}
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		for _, e := range d {
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(entryBodySize(e)))
			dst = appendString(dst, 1, e.Key)
			dst = appendString(dst, 2, e.Value)
		}
	}
	if hitsAddend != 0 {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(hitsAddend))
	}
	return dst
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" { // proto3: the default is not written
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func entryBodySize(e Entry) int { return stringSize(e.Key) + stringSize(e.Value) }

func entrySize(e Entry) int {
	n := entryBodySize(e)
	return 1 + protowire.SizeBytes(n)
}

// Status is one RateLimitResponse.DescriptorStatus (in the order of the request's
// descriptors).
type Status struct {
	Code Code
	// HasLimit: current_limit was set; then RequestsPerUnit and Unit describe it.
	HasLimit        bool
	RequestsPerUnit uint32
	Unit            Unit
	LimitRemaining  uint32
	// DurationUntilReset is duration_until_reset (0 when absent).
	DurationUntilReset time.Duration
}

// Header is a HeaderValue of response_headers_to_add / request_headers_to_add
// (value, or raw_value when value is empty, as Envoy's HeaderValue documents).
type Header struct{ Key, Value string }

// Response is the part of a RateLimitResponse the filter uses. Decode reuses its
// slices.
type Response struct {
	OverallCode     Code
	Statuses        []Status
	ResponseHeaders []Header // response_headers_to_add
	RequestHeaders  []Header // request_headers_to_add
}

// ErrMalformed is returned for bytes that are not a RateLimitResponse.
var ErrMalformed = errors.New("rls: malformed RateLimitResponse")

// Decode parses a RateLimitResponse into r (reusing its slices). Strings are copies.
func (r *Response) Decode(b []byte) error {
	r.OverallCode = CodeUnknown
	r.Statuses, r.ResponseHeaders, r.RequestHeaders = r.Statuses[:0], r.ResponseHeaders[:0], r.RequestHeaders[:0]
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, m []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			r.OverallCode = code(v)
		case num == 2 && typ == protowire.BytesType:
			s, err := decodeStatus(m)
			if err != nil {
				return err
			}
			r.Statuses = append(r.Statuses, s)
		case (num == 3 || num == 4) && typ == protowire.BytesType:
			h, err := decodeHeader(m)
			if err != nil {
				return err
			}
			if num == 3 {
				r.ResponseHeaders = append(r.ResponseHeaders, h)
			} else {
				r.RequestHeaders = append(r.RequestHeaders, h)
			}
		}
		return nil
	})
}

func code(v uint64) Code {
	if v > 2 {
		return CodeUnknown
	}
	return Code(v)
}

func decodeStatus(b []byte) (Status, error) {
	var s Status
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, m []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			s.Code = code(v)
		case num == 2 && typ == protowire.BytesType: // current_limit
			s.HasLimit = true
			return fields(m, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					s.RequestsPerUnit = uint32(v)
				case num == 2 && typ == protowire.VarintType:
					if v <= 7 {
						s.Unit = Unit(v)
					}
				}
				return nil
			})
		case num == 3 && typ == protowire.VarintType:
			s.LimitRemaining = uint32(v)
		case num == 4 && typ == protowire.BytesType: // google.protobuf.Duration
			var sec, nanos int64
			err := fields(m, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					sec = int64(v)
				case num == 2 && typ == protowire.VarintType:
					nanos = int64(int32(v))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if sec < 0 || nanos < 0 || sec > int64(1<<33) {
				return ErrMalformed
			}
			s.DurationUntilReset = time.Duration(sec)*time.Second + time.Duration(nanos)
		}
		return nil
	})
	return s, err
}

func decodeHeader(b []byte) (Header, error) {
	var h Header
	var raw []byte
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, m []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			h.Key = string(m)
		case 2:
			h.Value = string(m)
		case 3:
			raw = m
		}
		return nil
	})
	if h.Value == "" && len(raw) > 0 {
		h.Value = string(raw)
	}
	return h, err
}

// fields walks the fields of a message: v is a varint's value, m a length-delimited
// field's bytes; other wire types are skipped.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, m []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		var v uint64
		var m []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			m, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		if typ == protowire.VarintType || typ == protowire.BytesType {
			if err := f(num, typ, v, m); err != nil {
				return err
			}
		}
	}
	return nil
}
