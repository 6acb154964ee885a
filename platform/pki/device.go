package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrDeviceCert is wrapped when a client certificate names no device, or another device than the login.
var ErrDeviceCert = errors.New("device certificate")

// DeviceName is the subject common name of device productKey/deviceKey's
// certificate: "{productKey}/{deviceKey}".
func DeviceName(productKey, deviceKey string) (string, error) {
	if productKey == "" || deviceKey == "" || strings.Contains(productKey, "/") || strings.Contains(deviceKey, "/") {
		return "", fmt.Errorf("%w: product key %q and device key %q must be non-empty and without '/'", ErrDeviceCert, productKey, deviceKey)
	}
	return productKey + "/" + deviceKey, nil
}

// DeviceFromCert returns the device a certificate names in its subject
// common name ("{productKey}/{deviceKey}").
func DeviceFromCert(cert *x509.Certificate) (productKey, deviceKey string, err error) {
	pk, dk, ok := strings.Cut(cert.Subject.CommonName, "/")
	if !ok || pk == "" || dk == "" || strings.Contains(dk, "/") {
		return "", "", fmt.Errorf("%w: subject CN %q is not productKey/deviceKey", ErrDeviceCert, cert.Subject.CommonName)
	}
	return pk, dk, nil
}

// PeerCertificate returns the verified client certificate of conn, or nil
// when conn is not TLS (a *tls.Conn or a Conn of NewListener) or the client
// sent none. The handshake must be done (it is once anything was read from conn).
func PeerCertificate(conn net.Conn) *x509.Certificate {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete || len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0]
}

// CheckDevice checks that conn's client certificate, if any, names device
// productKey/deviceKey. A connection without one passes: whether a
// certificate is required is the listener's clientAuth.
func CheckDevice(conn net.Conn, productKey, deviceKey string) error {
	cert := PeerCertificate(conn)
	if cert == nil {
		return nil
	}
	pk, dk, err := DeviceFromCert(cert)
	if err != nil {
		return err
	}
	if pk != productKey || dk != deviceKey {
		return fmt.Errorf("%w: certificate names %s/%s, login is %s/%s", ErrDeviceCert, pk, dk, productKey, deviceKey)
	}
	return nil
}
