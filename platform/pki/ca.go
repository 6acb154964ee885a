package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of a development TLS directory (gale up --tls: DATA/tls).
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	// DevicesDir holds the device certificates issued from the CA.
	DevicesDir = "devices"
)

// Lifetimes of the certificates the CA issues; a certificate is renewed
// once less than renewBefore of it is left.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	leafLifetime   = 397 * 24 * time.Hour
	renewBefore    = 24 * time.Hour
	backdateIssued = time.Hour // tolerates clocks a little behind the CA's
)

// ErrCA is wrapped when a CA cannot be loaded or used.
var ErrCA = errors.New("certificate authority")

// CA is a certificate authority that issues Gale's server and device certificates.
type CA struct {
	// Cert is the CA's certificate.
	Cert *x509.Certificate
	// CertFile and KeyFile are where the CA is stored.
	CertFile, KeyFile string
	key               crypto.Signer
}

// DevFiles are the files of a development TLS directory.
type DevFiles struct {
	// CA is the CA certificate clients trust; CAKey its key.
	CA, CAKey string
	// Cert and Key are the server's certificate and key.
	Cert, Key string
}

// DevFilesIn names the files of the development TLS directory dir.
func DevFilesIn(dir string) DevFiles {
	return DevFiles{
		CA: filepath.Join(dir, CACertFile), CAKey: filepath.Join(dir, CAKeyFile),
		Cert: filepath.Join(dir, ServerCertFile), Key: filepath.Join(dir, ServerKeyFile),
	}
}

// EnsureDev keeps a development CA and a server certificate for hosts (plus
// 127.0.0.1, ::1 and localhost) in dir, making each only when it is missing
// or expired (or, for the server certificate, not from this CA or missing
// one of the hosts), so clients that trust the CA keep working across
// restarts.
func EnsureDev(dir string, hosts []string, now time.Time) (DevFiles, error) {
	files := DevFilesIn(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, fmt.Errorf("create TLS dir: %w", err)
	}
	ca, err := loadOrCreateCA(files.CA, files.CAKey, now)
	if err != nil {
		return files, err
	}
	hosts = ServerHosts(hosts)
	if ca.serverCertValid(files.Cert, files.Key, hosts, now) {
		return files, nil
	}
	if err := ca.IssueServer(files.Cert, files.Key, hosts, now); err != nil {
		return files, err
	}
	return files, nil
}

// ServerHosts returns hosts with 127.0.0.1, ::1 and localhost added,
// without duplicates, empty names or unspecified addresses (0.0.0.0, ::).
func ServerHosts(hosts []string) []string {
	out := []string{"127.0.0.1", "::1", "localhost"}
	for _, h := range hosts {
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) || slices.Contains(out, h) {
			continue
		}
		out = append(out, h)
	}
	return out
}

// loadOrCreateCA loads the CA, or makes a new one when it is missing or expired.
func loadOrCreateCA(certFile, keyFile string, now time.Time) (*CA, error) {
	ca, err := LoadCA(certFile, keyFile)
	if err == nil && now.Before(ca.Cert.NotAfter.Add(-renewBefore)) {
		return ca, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return CreateCA(certFile, keyFile, "Gale development CA", now)
}

// CreateCA makes a new self-signed CA and stores it (the key with mode 0600).
func CreateCA(certFile, keyFile, name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"Gale"}},
		NotBefore: now.Add(-backdateIssued), NotAfter: now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if err := writeKeyPair(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertFile: certFile, KeyFile: keyFile, key: key}, nil
}

// LoadCA reads a CA's PEM certificate and key (PKCS#8, EC or PKCS#1).
func LoadCA(certFile, keyFile string) (*CA, error) {
	cert, err := readCert(certFile)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrCA, certFile)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertFile: certFile, KeyFile: keyFile, key: key}, nil
}

// IssueServer issues a server certificate for hosts (IP addresses and DNS
// names) and stores it in certFile and keyFile (mode 0600).
func (ca *CA) IssueServer(certFile, keyFile string, hosts []string, now time.Time) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "gale server", Organization: []string{"Gale"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, certFile, keyFile, now)
}

// IssueDevice issues a client certificate naming device productKey/deviceKey
// (see DeviceName) and stores it in certFile and keyFile (mode 0600).
func (ca *CA) IssueDevice(certFile, keyFile, productKey, deviceKey string, now time.Time) error {
	name, err := DeviceName(productKey, deviceKey)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"Gale device"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, certFile, keyFile, now)
}

// issue signs tmpl with a new key and stores certificate and key.
func (ca *CA) issue(tmpl *x509.Certificate, certFile, keyFile string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return err
	}
	tmpl.NotBefore = now.Add(-backdateIssued)
	tmpl.NotAfter = now.Add(leafLifetime)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("%w: issue %q: %w", ErrCA, tmpl.Subject.CommonName, err)
	}
	return writeKeyPair(certFile, keyFile, der, key)
}

// serverCertValid reports whether the stored server certificate chains to
// ca, is good for a while yet and names every host.
func (ca *CA) serverCertValid(certFile, keyFile string, hosts []string, now time.Time) bool {
	cert, err := readCert(certFile)
	if err != nil {
		return false
	}
	if _, err := readKey(keyFile); err != nil {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(renewBefore), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := cert.Verify(opts); err != nil {
		return false
	}
	for _, h := range hosts {
		if cert.VerifyHostname(strings.Trim(h, "[]")) != nil {
			return false
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n, nil
}

// writeKeyPair stores a DER certificate (mode 0644) and a PKCS#8 key (mode 0600) as PEM.
func writeKeyPair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile replaces path atomically with data.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create dir of %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCA, path)
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: parse %s: %w", ErrCA, path, err)
			}
			return cert, nil
		}
	}
}

// readKey reads a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA).
func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM key", ErrCA, path)
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: parse key %s: %w", ErrCA, path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: key %s cannot sign", ErrCA, path)
	}
	return signer, nil
}

// DeviceFiles names the certificate and key files of device
// productKey/deviceKey in dir: {productKey}_{deviceKey}.crt and .key.
func DeviceFiles(dir, productKey, deviceKey string) (certFile, keyFile string) {
	base := filepath.Join(dir, productKey+"_"+deviceKey)
	return base + ".crt", base + ".key"
}
