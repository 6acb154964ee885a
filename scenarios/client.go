package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client calls the node's HTTP API with the admin token.
type client struct {
	base  string
	token string
	http  *http.Client
}

// statusError is a non-2xx answer.
type statusError struct {
	Status int
	Msg    string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg) }

// do sends body as JSON and decodes a 2xx answer into out.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %w", method, path, &statusError{Status: resp.StatusCode, Msg: strings.TrimSpace(string(b))})
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// series is one element of an instant vector.
type series struct {
	Metric map[string]string
	Value  float64
}

// query evaluates a PromQL expression at t; a scalar answer is one series
// without labels.
func (c *client) query(ctx context.Context, expr string, t time.Time) ([]series, error) {
	path := "/prometheus/api/v1/query?query=" + url.QueryEscape(expr) +
		"&time=" + strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
	var resp struct {
		Data struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &resp); err != nil {
		return nil, err
	}
	switch resp.Data.ResultType {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(resp.Data.Result, &v); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		f, err := parseValue(v[1])
		return []series{{Value: f}}, err
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(resp.Data.Result, &vec); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		out := make([]series, 0, len(vec))
		for _, s := range vec {
			f, err := parseValue(s.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, series{Metric: s.Metric, Value: f})
		}
		return out, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want an instant vector or a scalar", expr, resp.Data.ResultType)
	}
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return math.NaN(), fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}
