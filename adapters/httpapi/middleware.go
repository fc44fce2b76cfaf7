package httpapi

// The Server's middleware, outermost first, one file each: observe
// (middleware_observe.go: request id, access log, duration metric), compress
// (middleware_gzip.go), then the router, whose captureRoute
// (middleware_route.go) tells observe which route matched. They share the
// request's state through its context, below.

import "context"

// routeUnmatched labels requests no route matched (404 and 405), so that
// scanners cannot blow up the metric's cardinality.
const routeUnmatched = "unmatched"

type ctxKey int

const stateKey ctxKey = 0

// requestState is what the outer middleware learns about a request from the
// inner layers. It is created, written and read by the one goroutine serving
// the request.
type requestState struct {
	id    string
	route string
}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey).(*requestState)
	return st
}

func requestIDFrom(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.id
	}
	return ""
}
