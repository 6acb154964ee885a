package bus

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process Kafka broker (kfake).
type Embedded struct {
	cluster *kfake.Cluster
}

// User is a SCRAM user of the embedded broker; it may log in with
// SCRAM-SHA-256 or SCRAM-SHA-512.
type User struct {
	Name     string
	Password string
}

// Security secures the embedded broker. The zero value serves every client
// unauthenticated, in the clear.
type Security struct {
	// Users, when any, turn SASL on: a client that does not log in as one
	// of them is refused every request but the SASL handshake.
	Users []User
	// TLS, when set, makes the listener TLS.
	TLS *tls.Config
}

// StartEmbedded starts a one-broker Kafka on addr, unauthenticated,
// persisted under dataDir when it is set, with the given topics created.
func StartEmbedded(addr, dataDir string, syncWrites bool, partitions int, topics ...string) (*Embedded, error) {
	return StartEmbeddedSecure(addr, dataDir, syncWrites, partitions, Security{}, topics...)
}

// StartEmbeddedSecure is StartEmbedded with SASL users and TLS.
func StartEmbeddedSecure(addr, dataDir string, syncWrites bool, partitions int, sec Security, topics ...string) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(partitions), topics...),
		kfake.AllowAutoTopicCreation(),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if len(sec.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range sec.Users {
			if u.Name == "" || u.Password == "" {
				return nil, fmt.Errorf("embedded kafka user %q: %w", u.Name, ErrNoCredentials)
			}
			opts = append(opts, kfake.Superuser(ScramSHA256, u.Name, u.Password), kfake.Superuser(ScramSHA512, u.Name, u.Password))
		}
		if dataDir != "" {
			// kfake restores persisted credentials over the configured ones;
			// the configured users are the only ones that may log in.
			if err := os.Remove(filepath.Join(dataDir, "sasl.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("reset embedded kafka users: %w", err)
			}
		}
	}
	if sec.TLS != nil {
		opts = append(opts, kfake.TLS(sec.TLS))
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	if syncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w", addr, err)
	}
	if len(sec.Users) > 0 {
		if err := advertiseHandshakeV0(c, c.ListenAddrs()[0], sec.TLS != nil); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &Embedded{cluster: c}, nil
}

// Addrs returns the broker addresses.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker, flushing its data dir.
func (e *Embedded) Close() { e.cluster.Close() }

// ReadUsersFile reads SCRAM users from path: one "name:password" a line;
// blank lines and lines starting with '#' are skipped.
func ReadUsersFile(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	var users []User
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, pass, ok := strings.Cut(text, ":")
		if !ok || name == "" || pass == "" {
			return nil, fmt.Errorf("users file %s:%d: want name:password: %w", path, line, ErrNoCredentials)
		}
		users = append(users, User{Name: name, Password: pass})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read users file %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users file %s has no user: %w", path, ErrNoCredentials)
	}
	return users, nil
}
