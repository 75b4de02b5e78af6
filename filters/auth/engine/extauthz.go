package engine

import (
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/httpreq"
)

// ExtAuthzRequest is the HTTP check request the glue sends (Envoy ext_authz HTTP
// service semantics): the original method, path_prefix + the original :path,
// :authority from the config, no body, and the allowed request headers.
type ExtAuthzRequest struct {
	Cluster string
	Timeout time.Duration
	// Headers include :method, :path, :authority and content-length: 0.
	Headers []Header
}

// ExtAuthzResponse is what came back. Status 0 means no response (connection failure,
// timeout, reset).
type ExtAuthzResponse struct {
	Status  int
	Headers []Header // lower-case names
	Body    []byte
}

// MaxExtAuthzBody bounds the denial body copied to the client.
const MaxExtAuthzBody = 4096

// extAuthzRequest builds the check request from what Read found: the path in canonical
// form (so the service needs no HCM normalization either), identity headers are
// never among the allowed request headers it copies (the client's copies are stripped
// before the check, as they are before the upstream), and a repeated allowed header
// was refused before (the service would see one value, the upstream all).
func (e *Engine) extAuthzRequest(req *Extracted) *ExtAuthzRequest {
	x := e.Cfg.ExtAuthz
	hs := make([]Header, 0, 4+len(req.extVals))
	// The service decides on the path the rules matched: the canonical form (case
	// kept), whatever the mesh's path normalization handed over, the query as sent.
	path, query, hasQuery := strings.Cut(req.Path, "?")
	po := e.Cfg.Path.Options
	po.IgnoreCase = false
	path, _ = httpreq.CanonicalPath(path, po)
	if hasQuery {
		path += "?" + query
	}
	hs = append(hs, Header{":method", req.Method}, Header{":path", x.PathPrefix + path},
		Header{":authority", x.Authority}, Header{"content-length", "0"})
	for _, h := range req.extVals {
		hs = append(hs, Header{h.Name, strings.Clone(h.Value)})
	}
	return &ExtAuthzRequest{Cluster: x.Cluster, Timeout: x.Timeout, Headers: hs}
}

// DecideExtAuthz turns the check response into a verdict: 200 allows and copies
// allowed_upstream_headers onto the upstream request; any other status denies with
// that status, the service's body (up to MaxExtAuthzBody) and its
// allowed_client_headers; no response denies with status_on_error, or allows when
// failure_mode_allow is set (Reason ext_authz_error is then still reported).
//
// Caveat: Envoy's async HTTP client reports a connection failure or a timeout as the
// router's local reply (503, 504), not as a failure, and a service that answers 502,
// 503 or 504 is just as unavailable; so those statuses count as "no response" too.
func (e *Engine) DecideExtAuthz(resp ExtAuthzResponse) Verdict {
	x := e.Cfg.ExtAuthz
	if x == nil {
		return e.deny(ReasonInternalError, 0, "ext_authz not configured")
	}
	if unavailable(resp.Status) {
		if x.FailureModeAllow {
			return Verdict{Kind: Allow, Reason: ReasonExtAuthzError, Detail: "authorization service failed; failure_mode_allow"}
		}
		r := *e.response(ReasonExtAuthzError, x.StatusOnError, 0)
		r.Status, r.GRPCStatus = x.StatusOnError, GRPCStatus(x.StatusOnError)
		return Verdict{Kind: Deny, Reason: ReasonExtAuthzError, Response: &r, Detail: "authorization service failed"}
	}
	pick := func(allowed []string) []Header {
		var out []Header
		for _, h := range resp.Headers {
			for _, a := range allowed {
				if h.Name == a && headerValueOK(h.Value) {
					out = append(out, h)
				}
			}
		}
		return out
	}
	if resp.Status == 200 {
		id := &Identity{Method: "ext_authz"}
		if h := e.Cfg.Identity.ProviderHeader; h != "" {
			id.Headers = append(id.Headers, Header{h, "ext_authz"})
		}
		id.Headers = append(id.Headers, pick(x.AllowedUpstreamHeaders)...)
		return Verdict{Kind: Allow, Identity: id, SetHeaders: id.Headers}
	}
	status := resp.Status
	if status < 400 || status > 599 {
		status = 403
	}
	body := resp.Body
	if len(body) > MaxExtAuthzBody {
		body = body[:MaxExtAuthzBody]
	}
	r := &Response{Status: status, Headers: pick(x.AllowedClientHeaders), Body: string(body),
		GRPCStatus: GRPCStatus(status), GRPCMessage: ReasonExtAuthzDenied.Description()}
	return Verdict{Kind: Deny, Reason: ReasonExtAuthzDenied, Response: r, Detail: "authorization service denied"}
}

// unavailable reports whether a check status means the service could not decide.
func unavailable(status int) bool {
	return status == 0 || status == 502 || status == 503 || status == 504
}
