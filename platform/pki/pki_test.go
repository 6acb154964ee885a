package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/pki"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

func TestEnsureDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	files, err := pki.EnsureDev(dir, []string{"gale.example", "10.0.0.7", "0.0.0.0", ""}, now)
	require.NoError(t, err)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	for _, key := range []string{files.CAKey, files.Key} {
		st, err := os.Stat(key)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), key)
	}
	ca, srv := readCert(t, files.CA), readCert(t, files.Cert)
	require.True(t, ca.IsCA)
	require.ElementsMatch(t, []string{"localhost", "gale.example"}, srv.DNSNames)
	require.Len(t, srv.IPAddresses, 3, "127.0.0.1, ::1 and 10.0.0.7; never 0.0.0.0")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "gale.example", "10.0.0.7"} {
		_, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
		require.NoError(t, err, host)
	}

	tests := []struct {
		name             string
		hosts            []string
		at               time.Time
		remove           string
		newCA, newServer bool
	}{
		{name: "restart keeps both", hosts: []string{"gale.example", "10.0.0.7"}, at: now},
		{name: "fewer hosts keep both", hosts: nil, at: now.Add(time.Hour)},
		{name: "a new host renews the server certificate", hosts: []string{"other.example"}, at: now, newServer: true},
		{name: "a missing server key renews the server certificate", at: now, remove: files.Key, newServer: true},
		{name: "an expiring server certificate is renewed", at: now.Add(397 * 24 * time.Hour), newServer: true},
		{name: "an expired CA is made again, with its server certificate", at: now.Add(11 * 365 * 24 * time.Hour), newCA: true, newServer: true},
		{name: "a missing CA is made again", at: now, remove: files.CA, newCA: true, newServer: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.remove != "" {
				require.NoError(t, os.Remove(tc.remove))
			}
			beforeCA, _ := os.ReadFile(files.CA)
			beforeSrv, _ := os.ReadFile(files.Cert)
			got, err := pki.EnsureDev(dir, tc.hosts, tc.at)
			require.NoError(t, err)
			require.Equal(t, files, got)
			afterCA, err := os.ReadFile(files.CA)
			require.NoError(t, err)
			afterSrv, err := os.ReadFile(files.Cert)
			require.NoError(t, err)
			require.Equal(t, tc.newCA, string(beforeCA) != string(afterCA), "CA renewed")
			require.Equal(t, tc.newServer, string(beforeSrv) != string(afterSrv), "server certificate renewed")
		})
	}
}

func TestServerConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  pki.ServerConfig
		ok   bool
	}{
		{name: "plaintext", ok: true},
		{name: "tls", cfg: pki.ServerConfig{CertFile: "c", KeyFile: "k"}, ok: true},
		{name: "mutual", cfg: pki.ServerConfig{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", ClientAuth: "require"}, ok: true},
		{name: "cert without key", cfg: pki.ServerConfig{CertFile: "c"}},
		{name: "client CA without cert", cfg: pki.ServerConfig{ClientCAFile: "ca"}},
		{name: "client auth without CA", cfg: pki.ServerConfig{CertFile: "c", KeyFile: "k", ClientAuth: "optional"}},
		{name: "unknown client auth", cfg: pki.ServerConfig{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", ClientAuth: "always"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, pki.ErrConfig)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	files, err := pki.EnsureDev(t.TempDir(), nil, time.Now())
	require.NoError(t, err)
	srv, err := pki.ServerConfig{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: pki.ClientAuthRequire}.Load()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), srv.MinVersion)
	require.Equal(t, tls.RequireAndVerifyClientCert, srv.ClientAuth)
	require.NotNil(t, srv.ClientCAs)
	cli, err := pki.ClientConfig{CAFile: files.CA}.Load()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), cli.MinVersion)
	require.NotNil(t, cli.RootCAs)
	_, err = pki.ClientConfig{CAFile: files.Key}.Load()
	require.ErrorIs(t, err, pki.ErrConfig, "a key is no CA bundle")
	_, err = pki.ServerConfig{CertFile: files.CA, KeyFile: files.Key}.Load()
	require.Error(t, err, "certificate and key do not match")
	_, err = pki.ClientConfig{CertFile: files.Cert}.Load()
	require.ErrorIs(t, err, pki.ErrConfig)
}

func TestDeviceCertificates(t *testing.T) {
	dir := t.TempDir()
	files, err := pki.EnsureDev(dir, nil, time.Now())
	require.NoError(t, err)
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	require.NoError(t, err)
	certFile, keyFile := pki.DeviceFiles(filepath.Join(dir, pki.DevicesDir), "wind-turbine", "WT01")
	require.NoError(t, ca.IssueDevice(certFile, keyFile, "wind-turbine", "WT01", time.Now()))
	st, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	cert := readCert(t, certFile)
	pk, dk, err := pki.DeviceFromCert(cert)
	require.NoError(t, err)
	require.Equal(t, []string{"wind-turbine", "WT01"}, []string{pk, dk})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Error(t, ca.IssueDevice(certFile, keyFile, "a/b", "c", time.Now()), "a '/' in a key would be ambiguous")

	for _, cn := range []string{"", "WT01", "/WT01", "wind-turbine/", "a/b/c"} {
		t.Run("CN "+cn, func(t *testing.T) {
			_, _, err := pki.DeviceFromCert(&x509.Certificate{Subject: pkix.Name{CommonName: cn}})
			require.ErrorIs(t, err, pki.ErrDeviceCert)
		})
	}
	_, err = pki.LoadCA(certFile, keyFile)
	require.ErrorIs(t, err, pki.ErrCA, "a device certificate is no CA")
}
