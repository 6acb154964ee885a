package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus is client_golang's client of a Prometheus-compatible HTTP
// API, with the answer-typed queries Gale's callers use.
type Prometheus struct {
	v1.API
}

// NewPrometheus returns a client of the Prometheus-compatible API at
// promURL (without /api/v1): Gale's (http://host:port/prometheus) or a
// Prometheus server's.
func NewPrometheus(promURL string, o Options) (*Prometheus, error) {
	return newPrometheus(promURL, o.httpClient())
}

func newPrometheus(promURL string, hc *http.Client) (*Prometheus, error) {
	c, err := promapi.NewClient(promapi.Config{Address: promURL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("prometheus API %q: %w", promURL, err)
	}
	return &Prometheus{API: v1.NewAPI(galeErrors{c})}, nil
}

// galeErrors turns an answer that is not the Prometheus API's own (Gale's
// {"error": "..."} for a missing token, say) into an *Error with its status
// and message; client_golang would keep only the status.
type galeErrors struct{ promapi.Client }

func (g galeErrors) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := g.Client.Do(ctx, req)
	if err != nil || resp.StatusCode/100 == 2 {
		return resp, body, err
	}
	var env struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &env) == nil && env.Status != "" {
		return resp, body, nil // client_golang decodes the API's error
	}
	return resp, body, answerError(req, resp.StatusCode, body)
}

// Instant evaluates expr at at (zero: the server's now).
func (p *Prometheus) Instant(ctx context.Context, expr string, at time.Time) (model.Value, error) {
	v, _, _, err := p.Query(ctx, expr, at)
	if err != nil {
		return nil, fmt.Errorf("query %.200s: %w", expr, err)
	}
	return v, nil
}

// Vector evaluates expr, an instant vector or a scalar (one sample without
// labels), at at (zero: the server's now).
func (p *Prometheus) Vector(ctx context.Context, expr string, at time.Time) (model.Vector, error) {
	v, err := p.Instant(ctx, expr, at)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
	}
	return nil, fmt.Errorf("query %.200s: a %s, want an instant vector", expr, v.Type())
}

// Matrix evaluates expr, a range vector, at at (zero: the server's now).
func (p *Prometheus) Matrix(ctx context.Context, expr string, at time.Time) (model.Matrix, error) {
	v, err := p.Instant(ctx, expr, at)
	if err != nil {
		return nil, err
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("query %.200s: a %s, want a range vector", expr, v.Type())
	}
	return m, nil
}
