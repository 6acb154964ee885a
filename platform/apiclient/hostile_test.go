package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/apiclient"
)

// TestHostileServer: what a server answers cannot take the token elsewhere,
// flood an error message or pass for a product.
func TestHostileServer(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization") != "")
		w.Write([]byte(`{"key":"pump"}`))
	}))
	t.Cleanup(elsewhere.Close)
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/products/redirect":
			http.Redirect(w, r, elsewhere.URL+"/api/v1/products/pump", http.StatusFound)
		case "/api/v1/products/flood":
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(strings.Repeat("é", 1<<20)))
		case "/api/v1/products/garbage":
			w.Write([]byte(`{"key": [`))
		case "/prometheus/api/v1/query":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}`))
		}
	}))
	t.Cleanup(hostile.Close)
	c, err := apiclient.New(hostile.URL, apiclient.Options{Token: "secret", Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.Product(ctx, "redirect")
	require.Equal(t, http.StatusFound, apiclient.StatusOf(err), "%v", err)
	require.False(t, leaked.Load(), "the token did not follow the redirect")

	_, err = c.Product(ctx, "flood")
	require.Equal(t, http.StatusInternalServerError, apiclient.StatusOf(err))
	require.Less(t, len(err.Error()), 2<<10, "the message is cut")

	_, err = c.Product(ctx, "garbage")
	require.ErrorContains(t, err, "decode answer")

	_, err = c.Prom.Vector(ctx, "up", time.Time{})
	require.Error(t, err, "a sample value that is not a number")
}

// TestUncompressed: a client made Uncompressed asks for answers without gzip,
// on the registry API and the query API; by default it accepts gzip.
func TestUncompressed(t *testing.T) {
	var gzipAsked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			gzipAsked.Add(1)
		}
		if r.URL.Path == "/prometheus/api/v1/query" {
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
			return
		}
		w.Write([]byte(`{"key":"pump"}`))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	for _, uncompressed := range []bool{true, false} {
		gzipAsked.Store(0)
		c, err := apiclient.New(srv.URL, apiclient.Options{Uncompressed: uncompressed, Timeout: 5 * time.Second})
		require.NoError(t, err)
		_, err = c.Product(ctx, "pump")
		require.NoError(t, err)
		_, err = c.Prom.Vector(ctx, "up", time.Time{})
		require.NoError(t, err)
		if uncompressed {
			require.Zero(t, gzipAsked.Load(), "an uncompressed client asked for gzip")
		} else {
			require.EqualValues(t, 2, gzipAsked.Load(), "a default client accepts gzip")
		}
	}
}
