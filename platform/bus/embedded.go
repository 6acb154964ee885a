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
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process Kafka broker (kfake).
type Embedded struct {
	cluster *kfake.Cluster
	expires bool
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// Log says which topics the embedded broker creates and how long it keeps
// their records.
type Log struct {
	// Partitions of each topic created.
	Partitions int
	// Retention is how long the records of the Retained topics are kept
	// (by the time they were produced); 0 keeps them forever.
	Retention time.Duration
	// RetentionBytes bounds each partition of the Retained topics, the
	// oldest records going first; 0 or less sets no bound.
	RetentionBytes int64
	// Retained topics lose their records after Retention; Kept topics (a
	// change log that is the state itself) keep every record.
	Retained, Kept []string
}

// retentionInterval is how often the embedded broker drops expired records.
const retentionInterval = time.Minute

// MinRetention is the shortest retention the embedded broker accepts.
const MinRetention = time.Minute

// segmentBytes rolls the embedded broker's log files at 16 MiB (Kafka's
// default is 1 GiB): expired records leave memory and disk a file at a
// time, so a small fleet's files must fill within the retention.
const segmentBytes = 16 << 20

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
// persisted under dataDir when it is set, with the given topics created and
// their records kept forever.
func StartEmbedded(addr, dataDir string, syncWrites bool, partitions int, topics ...string) (*Embedded, error) {
	return StartEmbeddedSecure(addr, dataDir, syncWrites, Log{Partitions: partitions, Retained: topics}, Security{})
}

// StartEmbeddedSecure is StartEmbedded with the topics and retention of log,
// SASL users and TLS.
//
// The Retained topics take the broker's retention, so a changed retention
// applies to a data dir made earlier. The Kept topics are created with a
// retention of their own that keeps everything; in a data dir whose Kept
// topics were made without it (before retention existed), nothing expires
// and Expires reports false.
func StartEmbeddedSecure(addr, dataDir string, syncWrites bool, log Log, sec Security) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka port %q: %w", portStr, err)
	}
	retentionMs, retentionBytes := int64(-1), int64(-1)
	if log.Retention > 0 {
		retentionMs = log.Retention.Milliseconds()
	}
	if log.RetentionBytes > 0 {
		retentionBytes = log.RetentionBytes
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(log.Partitions), log.Retained...),
		kfake.AllowAutoTopicCreation(),
		kfake.BrokerConfigs(map[string]string{
			"log.retention.ms":    strconv.FormatInt(retentionMs, 10),
			"log.retention.bytes": strconv.FormatInt(retentionBytes, 10),
			"log.segment.bytes":   strconv.Itoa(segmentBytes),
			// kfake's own retention timer never fires: ApplyRetention runs
			// from runRetention only, once the Kept topics are safe.
			"log.cleaner.backoff.ms": strconv.FormatInt(100*365*24*time.Hour.Milliseconds(), 10),
		}),
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
	e := &Embedded{cluster: c, stop: make(chan struct{}), done: make(chan struct{})}
	kept, err := keepForever(c, log)
	if err != nil {
		c.Close()
		return nil, err
	}
	if kept && (retentionMs > 0 || retentionBytes > 0) {
		e.expires = true
		go e.runRetention()
	} else {
		close(e.done)
	}
	return e, nil
}

// keepAll is the retention of a Kept topic: no bound in time nor size.
var keepAll = map[string]string{"retention.ms": "-1", "retention.bytes": "-1"}

// keepForever creates the Kept topics that do not exist with keepAll, and
// reports whether every Kept topic has it.
func keepForever(c *kfake.Cluster, log Log) (bool, error) {
	kept := true
	for _, t := range log.Kept {
		info := c.TopicInfo(t)
		if info == nil {
			if err := c.CreateTopic(t, int32(log.Partitions), keepAll); err != nil {
				return false, fmt.Errorf("create embedded kafka topic %s: %w", t, err)
			}
			continue
		}
		for k, want := range keepAll {
			if v := info.Configs[k]; v == nil || *v != want {
				kept = false
			}
		}
	}
	return kept, nil
}

// runRetention drops the expired records of the Retained topics every
// retentionInterval until Close.
func (e *Embedded) runRetention() {
	defer close(e.done)
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.cluster.ApplyRetention()
		}
	}
}

// Expires reports whether the broker drops the expired records of its
// Retained topics: false when Log set no bound, or when a Kept topic of its
// data dir predates retention.
func (e *Embedded) Expires() bool { return e.expires }

// Addrs returns the broker addresses.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker, flushing its data dir.
func (e *Embedded) Close() {
	e.closing.Do(func() {
		close(e.stop)
		<-e.done
		e.cluster.Close()
	})
}

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
