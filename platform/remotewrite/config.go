package remotewrite

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"

	promconfig "github.com/prometheus/common/config"
)

// Config configures remote write to one endpoint. Zero values mean the
// defaults, filled by New. There is no queue setting: the endpoint's
// consumer group on gale.telemetry is the queue, bounded by Kafka's retention.
type Config struct {
	// Name identifies the endpoint in metrics and logs and names its consumer
	// group, so it must be unique on a node and stable: renaming it starts
	// the endpoint over from the oldest record Kafka keeps.
	Name string `yaml:"name"`
	// URL is the endpoint's remote-write URL, e.g. http://mimir:8080/api/v1/push.
	URL string `yaml:"url"`
	// Headers are set on every request, e.g. X-Scope-OrgID for a Mimir tenant.
	Headers map[string]string `yaml:"headers"`
	// TenantHeader, when set (e.g. X-Scope-OrgID, Mimir's), sends each org's
	// series in requests of their own with this header set to the org: one
	// tenant per org. Samples without an org, or whose org is not a valid
	// tenant id, are dropped and counted (outcome "dropped"), never sent
	// under another tenant.
	TenantHeader string `yaml:"tenantHeader"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer"; it is
	// read for every request, so the token can be rotated in place.
	BearerTokenFile string `yaml:"bearerTokenFile"`
	// Timeout bounds one request; default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamplesPerSend caps the samples of one request; default 2000.
	MaxSamplesPerSend int `yaml:"maxSamplesPerSend"`
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// request, doubling from min to max; default 30ms and 5s.
	MinBackoff time.Duration `yaml:"minBackoff"`
	MaxBackoff time.Duration `yaml:"maxBackoff"`
}

// Defaults for Config, Prometheus's own remote-write defaults.
const (
	DefaultTimeout           = 30 * time.Second
	DefaultMaxSamplesPerSend = 2000
	DefaultMinBackoff        = 30 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid remote write config")

var (
	validName  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	headerName = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)
	// validTenant is Mimir's rule for a tenant id (but "." and "..").
	validTenant = regexp.MustCompile(`^[A-Za-z0-9!._*'()-]{1,150}$`)
)

// Validate checks c; zero values are valid and stand for the defaults.
func (c Config) Validate() error {
	if !validName.MatchString(c.Name) {
		return fmt.Errorf("%w: name %q: want letters, digits, '_' or '-'", ErrConfig, c.Name)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %s: url %q: want http(s)://host/path", ErrConfig, c.Name, c.URL)
	}
	for h := range c.Headers {
		if _, ok := promconfig.ReservedHeaders[http.CanonicalHeaderKey(h)]; ok {
			return fmt.Errorf("%w: %s: header %q is set by remote write itself (use bearerTokenFile for authorization)", ErrConfig, c.Name, h)
		}
	}
	if c.TenantHeader != "" {
		key := http.CanonicalHeaderKey(c.TenantHeader)
		_, reserved := promconfig.ReservedHeaders[key]
		if !headerName.MatchString(c.TenantHeader) || reserved {
			return fmt.Errorf("%w: %s: tenantHeader %q: want a header name remote write does not set itself", ErrConfig, c.Name, c.TenantHeader)
		}
		for h := range c.Headers {
			if http.CanonicalHeaderKey(h) == key {
				return fmt.Errorf("%w: %s: header %q is also the tenantHeader", ErrConfig, c.Name, h)
			}
		}
	}
	switch {
	case c.Timeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0:
		return fmt.Errorf("%w: %s: timeout, minBackoff and maxBackoff must not be negative", ErrConfig, c.Name)
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("%w: %s: minBackoff %s is above maxBackoff %s", ErrConfig, c.Name, c.MinBackoff, c.MaxBackoff)
	case c.MaxSamplesPerSend < 0:
		return fmt.Errorf("%w: %s: maxSamplesPerSend must not be negative", ErrConfig, c.Name)
	}
	return nil
}

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.MaxSamplesPerSend = cmp.Or(c.MaxSamplesPerSend, DefaultMaxSamplesPerSend)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, max(DefaultMaxBackoff, c.MinBackoff))
	c.MinBackoff = cmp.Or(c.MinBackoff, min(DefaultMinBackoff, c.MaxBackoff))
	return c
}
