package bucket

// SipHash exposes sipHash to the tests.
var SipHash = sipHash
