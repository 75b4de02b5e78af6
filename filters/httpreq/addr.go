package httpreq

import (
	"net/netip"
	"strings"
)

// ClientAddress reads the client's IP address. With hops > 0 it is the address hops
// entries from the right of X-Forwarded-For (every copy, joined with ',' as Envoy's
// header map joins them), as Envoy's xff_num_trusted_hops selects it
// (Utility::getLastAddressFromXFF skipping hops-1 entries); with fewer entries than
// that, or hops 0, the connection's address source (Envoy's source.address property:
// "ip:port", "[ipv6]:port", or a bare address), as Envoy falls back to it.
//
// The address is canonical (CanonicalAddress). An X-Forwarded-For entry that is not a
// bare IP address (with a port or brackets, a hostname, "unknown": Envoy's
// parseInternetAddressNoThrow refuses them) is Ambiguous: it names no client
// and must not pick a bucket; an unreadable source is Absent.
func (r *Request) ClientAddress(source string, hops int) Value {
	if hops > 0 {
		var why string
		r.vals, why = r.AppendHeaderValues(r.vals[:0], "x-forwarded-for")
		if why != "" {
			return Value{State: Ambiguous, Why: why}
		}
		if len(r.vals) > 0 {
			// Walk the copies from the last one: the entry hops from the right.
			left := hops
			for i := len(r.vals) - 1; i >= 0; i-- {
				s := r.vals[i]
				for {
					j := strings.LastIndexByte(s, ',')
					if left--; left == 0 {
						entry := strings.Trim(s[j+1:], " \t")
						a, err := netip.ParseAddr(entry)
						if err != nil {
							return Value{State: Ambiguous, Why: "x-forwarded-for entry " + quoteShort(entry) + " is not an IP address"}
						}
						return r.addrValue(a.Unmap().WithZone(""))
					}
					if j < 0 {
						break
					}
					s = s[:j]
				}
			}
		}
	}
	a, ok := CanonicalAddress(source)
	if !ok {
		return Value{}
	}
	return r.addrValue(a)
}

func (r *Request) addrValue(a netip.Addr) Value {
	start := len(r.scratch)
	r.scratch = a.AppendTo(r.scratch)
	return Value{S: string(r.scratch[start:]), State: Present}
}

// CanonicalAddress parses a client address as Envoy and upstreams spell it: a bare IPv4
// or IPv6 address, "ip:port", "[ipv6]" or "[ipv6]:port". The result is one spelling per
// client: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address, a zone
// (fe80::1%eth0) is dropped, and the text form is RFC 5952's (netip.Addr.String).
func CanonicalAddress(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
