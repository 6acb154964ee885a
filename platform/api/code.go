package api

// Reply codes carried in Reply.Code. They follow HTTP status semantics so a
// device and an API client read them the same way.
const (
	CodeOK           = 200 // accepted
	CodeBadRequest   = 400 // malformed JSON or missing fields
	CodeUnauthorized = 401 // bad signature, unknown or disabled device, stale timestamp
	CodeForbidden    = 403 // topic outside the device's own namespace
	CodeUnknownPoint = 404 // measurepoint not in the device's thing model
	CodeTooLarge     = 413 // payload above the broker's size limit
	CodeInvalidValue = 422 // value of the wrong type, out of range, or timestamp outside the accepted window
	CodeRateLimited  = 429 // device above its message rate limit
	CodeInternal     = 500 // the platform failed; the device should retry
	CodeUnavailable  = 503 // the bus is unavailable; the message was not accepted
)

// CodeNotImplemented answers requests of the protocol that this node does not serve.
const CodeNotImplemented = 501
