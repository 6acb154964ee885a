package pki_test

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/pki"
)

func TestListener(t *testing.T) {
	dir := t.TempDir()
	files, err := pki.EnsureDev(dir, nil, time.Now())
	require.NoError(t, err)
	srvCfg, err := pki.ServerConfig{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: pki.ClientAuthOptional}.Load()
	require.NoError(t, err)
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	require.NoError(t, err)
	certFile, keyFile := pki.DeviceFiles(dir, "sensor", "d1")
	require.NoError(t, ca.IssueDevice(certFile, keyFile, "sensor", "d1", time.Now()))
	withCert, err := pki.ClientConfig{CAFile: files.CA, CertFile: certFile, KeyFile: keyFile}.Load()
	require.NoError(t, err)

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := pki.NewListener(inner, srvCfg, 300*time.Millisecond)
	t.Cleanup(func() { ln.Close() })

	type result struct {
		data      string
		err       error
		took      time.Duration
		checkD1   error
		checkD2   error
		hasClient bool
	}
	serve := func() <-chan result {
		out := make(chan result, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				out <- result{err: err}
				return
			}
			defer c.Close()
			start := time.Now()
			b := make([]byte, 4)
			_, err = io.ReadFull(c, b)
			out <- result{data: string(b), err: err, took: time.Since(start), hasClient: pki.PeerCertificate(c) != nil,
				checkD1: pki.CheckDevice(c, "sensor", "d1"), checkD2: pki.CheckDevice(c, "sensor", "d2")}
		}()
		return out
	}

	t.Run("silent client dropped after the handshake timeout", func(t *testing.T) {
		res := serve()
		c, err := net.Dial("tcp", inner.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		r := <-res
		require.Error(t, r.err)
		require.Less(t, r.took, 5*time.Second)
	})
	t.Run("plaintext refused", func(t *testing.T) {
		res := serve()
		c, err := net.Dial("tcp", inner.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		require.Error(t, (<-res).err)
	})
	caOnly, err := pki.ClientConfig{CAFile: filepath.Join(dir, pki.CACertFile)}.Load()
	require.NoError(t, err)
	for _, tc := range []struct {
		name      string
		cfg       *tls.Config
		hasClient bool
		checkD2   error // a connection without a certificate passes: clientAuth decides whether one is required
	}{
		{name: "TLS client with a device certificate", cfg: withCert, hasClient: true, checkD2: pki.ErrDeviceCert},
		{name: "TLS client without a certificate", cfg: caOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := serve()
			c, err := tls.Dial("tcp", inner.Addr().String(), tc.cfg)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write([]byte("ping"))
			require.NoError(t, err)
			r := <-res
			require.NoError(t, r.err)
			require.Equal(t, "ping", r.data)
			require.Equal(t, tc.hasClient, r.hasClient)
			require.NoError(t, r.checkD1)
			if tc.checkD2 != nil {
				require.ErrorIs(t, r.checkD2, tc.checkD2)
			} else {
				require.NoError(t, r.checkD2)
			}
		})
	}
}
