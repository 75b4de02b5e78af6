package httpreq

// SlowCanonicalPath is the slow path alone, for checking the fast path against it.
func SlowCanonicalPath(raw string, o PathOptions) (string, PathAmbiguity) {
	return canonicalize(raw, o, 0)
}
