// Package mqhttp is the queue's HTTP+JSON protocol (README "The queue protocol"): a Server that
// exposes a ports.Publisher and/or a ports.Consumer over HTTP (mqwriter
// serves the publish side, mqreader the lease side), and a Client that
// implements ports.Queue against one writer and any number of readers.
//
// # Wire protocol
//
// Every request is a POST with Content-Type application/json (a charset
// parameter, when present, must be utf-8) and a UTF-8 JSON object body of at
// most 8 MiB (ServerOptions.MaxBodyBytes). Unknown fields, trailing data
// and wrong types are rejected.
//
//	POST /v1/publish {"topic":"telemetry","messages":[{"payload":{…},"key":"GPU-…","idempotency_key":"run-1/42"}]}
//	  → 200 {"accepted":N,"duplicates":M}
//	POST /v1/lease   {"topic":"telemetry","consumer_id":"c-1","max":100,"lease_seconds":30,"wait_ms":1000}
//	  → 200 {"lease_id":"…","topic":"telemetry","consumer_id":"c-1","expires_at":"RFC 3339",
//	         "messages":[{"msg_uuid":"…","partition":17,"payload":{…},"created_at":"RFC 3339","deliveries":1}]}
//	POST /v1/ack     {"topic":"telemetry","consumer_id":"c-1","lease_id":"…"} → 200 {"status":"acked"}
//	POST /v1/release {"topic":"telemetry","consumer_id":"c-1","lease_id":"…","reason":"…"} → 200 {"status":"released"}
//
// The release's "reason" is optional (at most 2,048 bytes, no NUL): the
// consumer's last error, kept by the queue and recorded in the dead letter
// if the messages reach the delivery limit (ports/doc.go). A publish to the
// "telemetry" topic whose payload is a point with a text field beyond its
// bound (domain/bounds.go) is a 400 naming the message and the field.
//
// An empty lease (nothing ready) is a 200 with "messages":[]: at once, or,
// with "wait_ms" (optional, 0 to 20000), when that wait has passed with
// nothing ready; a lease that waits is answered as soon as messages are
// (a long poll, ADR 0014). A lease granted
// after its client hung up is released at once, not written to nobody. Limits: topic,
// consumer_id, key and idempotency_key at most 256 bytes; 1 ≤ max ≤ the
// queue's lease limit (5000 by default); 1 ≤ lease_seconds ≤ its limit (300
// by default, 3600 at most); 1 to 10000 messages per publish, each with a
// non-null payload of at most ServerOptions.MaxPayloadBytes (64 KiB by
// default). More than 10000 messages, or a larger payload, is a 413, like an
// oversized body.
//
// Admission (admit.go): before a body is read, a declared Content-Length over
// MaxBodyBytes is a 413, and a request that would pass MaxInflightBytes of
// bodies in progress, or a publish past MaxConcurrentPublishes, is a 429 with
// Retry-After; its body is never read.
//
// # Authentication
//
// With ServerOptions.Auth set (the apps always set it unless MQ_AUTH=none)
// every route needs Authorization: Bearer <token> with a token of the
// route's scope: publish for /v1/publish, consume for /v1/lease, /v1/ack and
// /v1/release (Routes lists them; the scope is a property of the route
// table, so a new route gets one where it is added). The check comes before
// the body is read. A missing token is a 401 with WWW-Authenticate: Bearer
// realm="telemetry-queue", an unknown one a 401 with error="invalid_token",
// a token of the other scope a 403 with error="insufficient_scope"; each is
// counted in mqhttp_auth_refusals_total{reason="missing|invalid|wrong_scope"}.
// Tokens are compared in constant time with every configured token and are
// never logged. A route of the side a server does not serve answers its 404
// without a token. ClientConfig.Token sends the token on every call.
//
// Errors are {"error":{"code":"…","message":"…"}} with a stable code:
//
//	400 invalid_argument        malformed or out-of-range request (ports.ErrInvalidArgument)
//	401 unauthenticated         no bearer token, or one no scope lists
//	403 forbidden               a token of the other scope (publish token on lease, …)
//	404 not_found               unknown route, a side this server does not serve, or a topic
//	                            outside ServerOptions.Topics (mqwriter's and mqreader's QUEUE_TOPICS)
//	405 method_not_allowed      not a POST
//	409 lease_expired           ack/release of an expired or unknown lease (ports.ErrLeaseExpired)
//	413 payload_too_large       body over the limit, more than 10000 messages, or a payload over MaxPayloadBytes
//	415 unsupported_media_type  Content-Type is not application/json (NDJSON on the stream), a charset
//	                            other than UTF-8, or a Content-Encoding: the server does not decompress
//	429 backpressure            the writer's buffer is full (ports.ErrBackpressure), or the server's
//	                            in-flight bytes or publish slots are taken; Retry-After: 1
//	503 closed / unavailable    draining, or a dependency is down (ports.ErrClosed, ports.ErrUnavailable), Retry-After: 1
//	504 timeout                 the request's deadline passed inside the server
//	500 internal                anything else; the message is generic, details are only logged
//
// # Streaming publish
//
// POST /v1/publish/stream (Content-Type application/x-ndjson) is the
// publish path for producers that send many messages: one long-lived
// full-duplex exchange (HTTP/1.1 with http.ResponseController's
// EnableFullDuplex, or an HTTP/2 stream), a frame per message each way:
//
//	→ {"seq":1,"topic":"telemetry","payload":{…},"key":"GPU-…","idempotency_key":"run-1/42"}
//	← {"seq":1,"status":"accepted"}   (or "duplicate"; both only after the commit)
//	← {"seq":2,"status":"error","error":{"code":"backpressure","message":"…"},"retry_after_ms":1000}
//
// Answers come in any order; seq (chosen by the client, at least 1) pairs
// them. A seq sent again while its message is unanswered waits for that
// answer, so two answers of one seq come in the order of their frames. A
// refused message (the codes above) does not end the stream; a
// malformed frame, an idle stream (2 min) or a draining server ends it with
// a last frame of seq 0 saying why. A stream outlives the http.Server's
// ReadTimeout and WriteTimeout (it moves its own deadlines: 2 min from the
// last frame read and from the last answer written); a client that reads no
// answer for 2 min is cut off, and the stream stops reading once an answer
// cannot be written, so its producer learns at once and resends. The
// server holds at most StreamWindow messages (StreamWindowBytes of frames)
// of a stream unanswered and stops reading past that: backpressure is
// TCP's flow control, nothing is dropped.
// The Client uses the stream when ClientConfig.Stream is set: Publish sends
// each message as a frame on one shared connection (reopened on demand),
// at most StreamWindow messages in flight (Publish waits past that), and a
// lost connection fails its unanswered messages with ErrUnavailable, so
// the one retry loop sends them again with their idempotency keys; so does
// a connection that answered nothing for ClientConfig.StreamStallTimeout
// (30 s by default) while messages were in flight.
//
// # Client
//
// The Client maps those answers back to the ports sentinels and retries the
// transient ones (network errors, 429, 502, 503, 504) with the module's one
// retry policy (internal/retry: capped exponential backoff with jitter, at
// most MaxAttempts tries, Retry-After honoured), counting every retry in
// mqhttp_client_retries_total{op,reason}. A Lease moves on to the next
// reader at once and backs off only when every reader failed. Ack and
// Release are idempotent, so retrying them is safe. Publish is retried too:
// with idempotency keys a retry can never store a message twice; without
// them a publish whose answer was lost may be stored twice under two
// msg_uuids, and since the collector deduplicates by msg_uuid that becomes a
// duplicate telemetry row. That is why the streamer always sets keys. The
// streamer retries its publishes itself, over any backend, so its client is
// built with PublishOnce: one loop per path, never one inside another.
package mqhttp
