// Package pki is Gale's TLS: server and client TLS configs loaded from PEM
// files, a development CA that issues server and device certificates, and
// the mapping from a device certificate to the device it names.
//
// A device certificate names its device by its subject common name,
// "{productKey}/{deviceKey}" (the way mosquitto's use_identity_as_username
// and EMQX's peer_cert_as_username take the CN). With mutual TLS the broker
// refuses a login whose username names another device than the certificate
// the client presented; the signed password is still required.
//
// The package imports nothing of Gale's, so every client (device SDK, edge,
// twins, loadgen) may use it.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Client authentication modes of a server.
const (
	// ClientAuthNone asks no client certificate.
	ClientAuthNone = "none"
	// ClientAuthOptional verifies a client certificate when one is given.
	ClientAuthOptional = "optional"
	// ClientAuthRequire refuses clients without a valid certificate.
	ClientAuthRequire = "require"
)

// ErrConfig is wrapped by every TLS configuration error.
var ErrConfig = errors.New("invalid TLS config")

// ServerConfig is a listener's TLS: its certificate and key, and the CA
// that client certificates must chain to. An empty CertFile serves
// plaintext.
type ServerConfig struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and key.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCAFile is the PEM CA bundle client certificates are verified against.
	ClientCAFile string `yaml:"clientCAFile"`
	// ClientAuth is none (default), optional or require.
	ClientAuth string `yaml:"clientAuth"`
}

// Enabled reports whether the listener serves TLS.
func (c ServerConfig) Enabled() bool { return c.CertFile != "" }

// Validate checks c without reading the files.
func (c ServerConfig) Validate() error {
	switch c.ClientAuth {
	case "", ClientAuthNone, ClientAuthOptional, ClientAuthRequire:
	default:
		return fmt.Errorf("%w: clientAuth %q: want none, optional or require", ErrConfig, c.ClientAuth)
	}
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return fmt.Errorf("%w: certFile and keyFile go together", ErrConfig)
	case !c.Enabled() && (c.ClientCAFile != "" || c.mutual()):
		return fmt.Errorf("%w: clientCAFile and clientAuth need certFile and keyFile", ErrConfig)
	case c.mutual() && c.ClientCAFile == "":
		return fmt.Errorf("%w: clientAuth %s needs clientCAFile", ErrConfig, c.ClientAuth)
	}
	return nil
}

// mutual reports whether client certificates are asked for.
func (c ServerConfig) mutual() bool {
	return c.ClientAuth == ClientAuthOptional || c.ClientAuth == ClientAuthRequire
}

// Load reads the files and returns the server's TLS config (TLS 1.2 at least).
func (c ServerConfig) Load() (*tls.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, fmt.Errorf("%w: no certFile", ErrConfig)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate %s: %w", c.CertFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCAFile != "" {
		if cfg.ClientCAs, err = loadPool(c.ClientCAFile); err != nil {
			return nil, err
		}
	}
	switch c.ClientAuth {
	case ClientAuthOptional:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig is a client's TLS: the CA it trusts and, for mutual TLS, its
// own certificate.
type ClientConfig struct {
	// CAFile is the PEM CA bundle the server's certificate must chain to
	// (empty: the system's roots).
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are the client's certificate and key (optional).
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName overrides the name verified in the server's certificate
	// (default: the host dialled).
	ServerName string `yaml:"serverName"`
}

// Validate checks c without reading the files.
func (c ClientConfig) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: certFile and keyFile go together", ErrConfig)
	}
	return nil
}

// Load reads the files and returns the client's TLS config (TLS 1.2 at least).
func (c ClientConfig) Load() (*tls.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s: %w", c.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// loadPool reads a PEM CA bundle.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, path)
	}
	return pool, nil
}
