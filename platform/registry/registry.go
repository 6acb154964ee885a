// Package registry keeps orgs, sites, products with their thing models,
// devices and API tokens in SQLite, with an in-memory index for the hot path
// (connect authentication and per-message validation).
package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/gale-iot/gale/platform/api"
	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// Sentinel errors; the HTTP API maps them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	ErrInUse    = errors.New("in use")
)

const schema = `
CREATE TABLE IF NOT EXISTS assets (
	id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, parent TEXT NOT NULL, org TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
	key TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL, model TEXT NOT NULL, org TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS devices (
	product_key TEXT NOT NULL REFERENCES products(key), device_key TEXT NOT NULL, name TEXT NOT NULL,
	secret TEXT NOT NULL, enabled INTEGER NOT NULL, org TEXT NOT NULL, site TEXT NOT NULL,
	gateway_pk TEXT NOT NULL, gateway_dk TEXT NOT NULL, attributes TEXT NOT NULL, created_at INTEGER NOT NULL,
	PRIMARY KEY (product_key, device_key));
`

// Registry is the device registry. It is safe for concurrent use.
type Registry struct {
	db *sql.DB

	mu       sync.RWMutex
	products map[string]*Model
	devices  map[deviceID]*api.Device
	assets   map[string]api.Asset
	tokens   map[string]*tokenEntry // by hash
	tokenIDs map[string]string      // token id → hash
	users    map[string]*userEntry
	// lastPurge is when expired tokens were last purged (PurgeExpired).
	lastPurge time.Time
	publish   Publisher
	origin    string
	watch     watchers

	// changeMu serialises the local changes (each held from its storing to
	// its announcement, or its undoing) and the applied ones, so that undoing
	// a change never overwrites another. Readers only take mu.
	changeMu sync.Mutex
	// keys seal device secrets in the database; nil stores them in plaintext.
	keys *Keys

	// bg tracks the background writes of tokens' last use; Close waits for them.
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed bool
}

// Option configures Open.
type Option func(*Registry)

// WithKeys seals device secrets in the database with keys (AES-GCM); an
// existing database's plaintext secrets are sealed when it is opened.
func WithKeys(k *Keys) Option { return func(r *Registry) { r.keys = k } }

type deviceID struct{ pk, dk string }

// Open opens (creating if needed) the registry database at path. The
// database and its journal files are readable by the owner only.
func Open(path string, opts ...Option) (*Registry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create registry dir: %w", err)
	}
	// SQLite gives its -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create registry %q: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("restrict registry file: %w", err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, fmt.Errorf("open registry %q: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + alertSchema + commandSchema + accountSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create registry schema in %q: %w", path, err)
	}
	if err := addColumns(db, "products", productColumns); err != nil {
		db.Close()
		return nil, fmt.Errorf("registry %q: %w", path, err)
	}
	if err := migrateAccounts(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("registry %q: %w", path, err)
	}
	r := &Registry{db: db}
	for _, o := range opts {
		o(r)
	}
	if err := r.load(); err != nil {
		db.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the database, after the pending writes of tokens' last use.
func (r *Registry) Close() error {
	r.bgMu.Lock()
	r.closed = true
	r.bgMu.Unlock()
	r.bg.Wait()
	return r.db.Close()
}

func (r *Registry) load() error {
	r.products = map[string]*Model{}
	r.devices = map[deviceID]*api.Device{}
	r.assets = map[string]api.Asset{}

	rows, err := r.db.Query(`SELECT key, name, description, model, org FROM products`)
	if err != nil {
		return fmt.Errorf("load products: %w", err)
	}
	for rows.Next() {
		var p api.Product
		var model string
		if err := rows.Scan(&p.Key, &p.Name, &p.Description, &model, &p.Org); err != nil {
			rows.Close()
			return fmt.Errorf("load products: %w", err)
		}
		if err := json.Unmarshal([]byte(model), &p.Model); err != nil {
			rows.Close()
			return fmt.Errorf("load product %q model: %w", p.Key, err)
		}
		r.products[p.Key] = compile(p)
	}
	rows.Close()

	rows, err = r.db.Query(`SELECT product_key, device_key, name, secret, enabled, org, site, gateway_pk, gateway_dk, attributes, created_at FROM devices`)
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	var plaintext []*api.Device // secrets of an older database, to seal
	for rows.Next() {
		d := &api.Device{}
		var attrs, secret string
		if err := rows.Scan(&d.ProductKey, &d.DeviceKey, &d.Name, &secret, &d.Enabled, &d.Org, &d.Site,
			&d.GatewayProductKey, &d.GatewayDeviceKey, &attrs, &d.CreatedAt); err != nil {
			rows.Close()
			return fmt.Errorf("load devices: %w", err)
		}
		var plain bool
		if d.Secret, plain, err = r.keys.openRest(secret, secretAD(d.ProductKey, d.DeviceKey)); err != nil {
			rows.Close()
			return fmt.Errorf("load device %s/%s secret: %w", d.ProductKey, d.DeviceKey, err)
		}
		if plain && r.keys != nil {
			plaintext = append(plaintext, d)
		}
		if err := json.Unmarshal([]byte(attrs), &d.Attributes); err != nil {
			rows.Close()
			return fmt.Errorf("load device %s/%s attributes: %w", d.ProductKey, d.DeviceKey, err)
		}
		r.devices[deviceID{d.ProductKey, d.DeviceKey}] = d
	}
	rows.Close()
	if err := r.sealPlaintextSecrets(plaintext); err != nil {
		return err
	}

	rows, err = r.db.Query(`SELECT id, kind, name, parent, org FROM assets`)
	if err != nil {
		return fmt.Errorf("load assets: %w", err)
	}
	for rows.Next() {
		var a api.Asset
		if err := rows.Scan(&a.ID, &a.Kind, &a.Name, &a.Parent, &a.Org); err != nil {
			rows.Close()
			return fmt.Errorf("load assets: %w", err)
		}
		r.assets[a.ID] = a
	}
	rows.Close()

	return r.loadAccounts()
}

// randomHex returns n random bytes hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
