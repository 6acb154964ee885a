package edge

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/pki"
)

// Sentinel errors of Config.Validate and Run.
var (
	ErrDataDir   = errors.New("data_dir is required")
	ErrGateway   = errors.New("gateway needs product_key, device_key and secret")
	ErrCloud     = errors.New("invalid cloud settings")
	ErrNoTargets = errors.New("no Modbus targets")
	ErrTarget    = errors.New("invalid Modbus target")
	ErrUnit      = errors.New("invalid unit")
	ErrService   = errors.New("invalid service mapping")
	ErrQueue     = errors.New("invalid queue settings")
	ErrHA        = errors.New("invalid ha settings")
	ErrStale     = errors.New("stale_after must be positive")
	// ErrNoModel is returned by Run when a sub-device's thing model can be
	// neither fetched from the cloud nor read from the local copy.
	ErrNoModel = errors.New("no thing model")
)

// Config configures an edge gateway (gale edge --config FILE).
type Config struct {
	// DataDir holds the store-and-forward queue (queue.db) and the thing
	// model cache (models/).
	DataDir string `yaml:"data_dir"`
	// HTTPAddr serves /metrics and /healthz; empty serves nothing.
	HTTPAddr string `yaml:"http_addr"`
	// Gateway is the device the edge logs in as.
	Gateway Identity `yaml:"gateway"`
	// Cloud is where the edge sends data and fetches thing models.
	Cloud CloudConfig `yaml:"cloud"`
	// StaleAfter marks a unit's values stale (quality bad) once its heartbeat
	// register has not moved for this long (default 5s).
	StaleAfter time.Duration `yaml:"stale_after"`
	// Targets are the Modbus TCP devices or gateways the edge polls.
	Targets []Target `yaml:"targets"`
	// Services turns service calls into Modbus writes: product key → service
	// → input parameter → point of a writable register. A service named like
	// a writable coil of the unit's map needs no entry: it writes 1 to that
	// coil. Default: wind-turbine's setPowerLimit writes its limit to WTUR.DmdW.
	Services map[string]map[string]map[string]string `yaml:"services"`
	// Queue bounds the store-and-forward queue.
	Queue QueueConfig `yaml:"queue"`
	// HA, when set, runs this edge as one of an active/standby pair.
	HA *HAConfig `yaml:"ha"`
}

// Identity is a device's login.
type Identity struct {
	ProductKey string `yaml:"product_key"`
	DeviceKey  string `yaml:"device_key"`
	Secret     string `yaml:"secret"`
}

// CloudConfig says how to reach the cloud.
type CloudConfig struct {
	// MQTTAddr is the broker, host:port.
	MQTTAddr string `yaml:"mqtt_addr"`
	// APIURL is the HTTP API the thing models come from, e.g. http://127.0.0.1:8080
	// or https://… (verified with TLS's CA when set, else the system's roots).
	APIURL string `yaml:"api_url"`
	// TLS, when set (even empty), connects to the broker over TLS; its CA
	// and client certificate serve an https api_url too.
	TLS *CloudTLS `yaml:"tls"`
	// Token is the API bearer token; TokenFile names a file holding it (one of the two).
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// PublishTimeout bounds the wait for a message's PUBACK and reply (default 5s);
	// a message not acknowledged in time stays queued and is replayed.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// KeepAlive is the MQTT keep-alive (default 15s).
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ReconnectMax caps the back-off between connection attempts (default 10s).
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// MaxInFlight is how many messages (post/batch or resume/batch) the
	// gateway has on their way at once, waiting for their PUBACK and reply
	// (default 16; keep it at or below the broker's maxInFlight, 32 by
	// default, or the broker holds the rest back).
	MaxInFlight int `yaml:"max_in_flight"`
}

// CloudTLS is the edge's TLS towards the cloud.
type CloudTLS struct {
	// CAFile is the PEM CA the cloud's certificates chain to (empty: the system's roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the gateway's client certificate and key for
	// mutual TLS; the certificate's subject CN must be "{product_key}/{device_key}"
	// of the gateway.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name verified in the cloud's certificates.
	ServerName string `yaml:"server_name"`
}

// ClientTLS loads the TLS config towards the cloud; nil when TLS is not set.
func (c CloudConfig) ClientTLS() (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	cfg, err := pki.ClientConfig(*c.TLS).Load()
	if err != nil {
		return nil, fmt.Errorf("%w: tls: %w", ErrCloud, err)
	}
	return cfg, nil
}

// Target is one Modbus TCP endpoint and the units behind it.
type Target struct {
	// Name identifies the target in logs and metrics.
	Name string `yaml:"name"`
	// Addr is host:port.
	Addr string `yaml:"addr"`
	// Timeout bounds one Modbus request (default 1s).
	Timeout time.Duration `yaml:"timeout"`
	// Units are the devices behind the target.
	Units []Unit `yaml:"units"`
}

// Unit is a device behind a target: its unit id and register map, and the
// sub-device it is in the cloud.
type Unit struct {
	// Unit is the device key, the unit id and the register map: a shipped
	// map's name (wind-turbine, met-mast) or the path of a YAML map file.
	regmap.Unit `yaml:",inline"`
	// ProductKey is the sub-device's product (default: the name of a shipped
	// map; required with a map file).
	ProductKey string `yaml:"product_key"`
	// Secret is the sub-device's secret, which signs its login.
	Secret string `yaml:"secret"`
}

// QueueConfig bounds the store-and-forward queue.
type QueueConfig struct {
	// MaxBytes is the payload the queue holds before it drops the oldest
	// samples (default 256 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// ReplayBatch is the number of samples per resume/batch message (default 100).
	ReplayBatch int `yaml:"replay_batch"`
	// LiveBatch is the most samples per live measurepoint/post/batch
	// message (default 100). Live sends what is queued: a gateway that
	// keeps up sends small batches, one that fell behind large ones.
	LiveBatch int `yaml:"live_batch"`
	// Fsync makes every queued sample survive a power loss, not only a
	// crash of the process, at the cost of one fsync per sample.
	Fsync bool `yaml:"fsync"`
}

// HAConfig places the edge in an active/standby pair.
type HAConfig struct {
	// Node names this edge; the two edges of a pair have different names.
	Node string `yaml:"node"`
	// Listen is the UDP address this edge receives its peer's heartbeats on.
	Listen string `yaml:"listen"`
	// Peer is the UDP address of the other edge.
	Peer string `yaml:"peer"`
	// Interval is the time between heartbeats (default 500ms).
	Interval time.Duration `yaml:"interval"`
	// Timeout is the silence after which the standby takes over (default 2s).
	Timeout time.Duration `yaml:"timeout"`
}

// Default values.
const (
	DefaultStaleAfter     = 5 * time.Second
	DefaultPublishTimeout = 5 * time.Second
	DefaultKeepAlive      = 15 * time.Second
	DefaultReconnectMax   = 10 * time.Second
	DefaultModbusTimeout  = time.Second
	DefaultQueueBytes     = 256 << 20
	DefaultReplayBatch    = 100
	DefaultLiveBatch      = 100
	DefaultMaxInFlight    = 16
	DefaultHAInterval     = 500 * time.Millisecond
	DefaultHATimeout      = 2 * time.Second
)

// Complete fills the defaults of what the file left unset and validates
// the config (internal/config.Load reads an edge config with it).
func (c *Config) Complete() error {
	c.Default()
	return c.Validate()
}

// Default fills unset fields, each type's its own.
func (c *Config) Default() {
	c.StaleAfter = cmp.Or(c.StaleAfter, DefaultStaleAfter)
	c.Cloud.Default()
	for i := range c.Targets {
		c.Targets[i].Default()
	}
	if c.Services == nil {
		c.Services = map[string]map[string]map[string]string{
			"wind-turbine": {"setPowerLimit": {"limit": "WTUR.DmdW"}},
		}
	}
	c.Queue.Default()
	if c.HA != nil {
		c.HA.Default()
	}
}

// Default fills unset fields.
func (c *CloudConfig) Default() {
	c.PublishTimeout = cmp.Or(c.PublishTimeout, DefaultPublishTimeout)
	c.KeepAlive = cmp.Or(c.KeepAlive, DefaultKeepAlive)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, DefaultReconnectMax)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
}

// Default fills unset fields: the timeout, and the product of a unit with a shipped map.
func (t *Target) Default() {
	t.Timeout = cmp.Or(t.Timeout, DefaultModbusTimeout)
	for j := range t.Units {
		if u := &t.Units[j]; u.ProductKey == "" && !isMapFile(u.Map) {
			u.ProductKey = u.Map
		}
	}
}

// Default fills unset fields.
func (q *QueueConfig) Default() {
	q.MaxBytes = cmp.Or(q.MaxBytes, DefaultQueueBytes)
	q.ReplayBatch = cmp.Or(q.ReplayBatch, DefaultReplayBatch)
	q.LiveBatch = cmp.Or(q.LiveBatch, DefaultLiveBatch)
}

// Default fills unset fields.
func (h *HAConfig) Default() {
	h.Interval = cmp.Or(h.Interval, DefaultHAInterval)
	h.Timeout = cmp.Or(h.Timeout, DefaultHATimeout)
}

func hostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	return err == nil && h != "" && p != ""
}

// Validate checks the config, including that every register map loads and
// that mapped services write writable registers. Thing-model checks happen
// in Run, once the models are at hand.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return ErrDataDir
	}
	if c.HTTPAddr != "" && !hostPort(c.HTTPAddr) {
		return fmt.Errorf("http_addr %q is not host:port", c.HTTPAddr)
	}
	if c.Gateway.ProductKey == "" || c.Gateway.DeviceKey == "" || c.Gateway.Secret == "" {
		return ErrGateway
	}
	if err := c.Cloud.validate(); err != nil {
		return err
	}
	if c.StaleAfter <= 0 {
		return ErrStale
	}
	maps, err := c.maps()
	if err != nil {
		return err
	}
	if err := c.validateServices(maps); err != nil {
		return err
	}
	if c.Queue.MaxBytes < 64<<10 || c.Queue.ReplayBatch < 1 || c.Queue.ReplayBatch > 1000 || c.Queue.LiveBatch < 1 || c.Queue.LiveBatch > 1000 {
		return fmt.Errorf("%w: max_bytes must be at least 64 KiB and replay_batch and live_batch in 1…1000", ErrQueue)
	}
	if c.HA != nil {
		return c.HA.validate()
	}
	return nil
}

func (c CloudConfig) validate() error {
	switch {
	case !hostPort(c.MQTTAddr):
		return fmt.Errorf("%w: mqtt_addr %q is not host:port", ErrCloud, c.MQTTAddr)
	case (c.Token == "") == (c.TokenFile == ""):
		return fmt.Errorf("%w: set one of token and token_file", ErrCloud)
	case c.PublishTimeout <= 0 || c.KeepAlive <= 0 || c.ReconnectMax <= 0:
		return fmt.Errorf("%w: publish_timeout, keep_alive and reconnect_max must be positive", ErrCloud)
	case c.MaxInFlight < 1 || c.MaxInFlight > 1000:
		return fmt.Errorf("%w: max_in_flight must be in 1…1000", ErrCloud)
	}
	u, err := url.Parse(c.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: api_url %q is not an http(s) URL", ErrCloud, c.APIURL)
	}
	if c.TLS != nil {
		if err := pki.ClientConfig(*c.TLS).Validate(); err != nil {
			return fmt.Errorf("%w: tls: %w", ErrCloud, err)
		}
	}
	return nil
}

// maps checks targets and units and loads every register map they name.
func (c Config) maps() (map[string]*regmap.Map, error) {
	if len(c.Targets) == 0 {
		return nil, ErrNoTargets
	}
	maps := map[string]*regmap.Map{}
	names := map[string]bool{}
	devices := map[string]bool{}
	for _, t := range c.Targets {
		switch {
		case t.Name == "" || names[t.Name]:
			return nil, fmt.Errorf("%w: name %q missing or used twice", ErrTarget, t.Name)
		case !hostPort(t.Addr):
			return nil, fmt.Errorf("%w: %s: addr %q is not host:port", ErrTarget, t.Name, t.Addr)
		case t.Timeout <= 0:
			return nil, fmt.Errorf("%w: %s: timeout must be positive", ErrTarget, t.Name)
		case len(t.Units) == 0:
			return nil, fmt.Errorf("%w: %s has no units", ErrTarget, t.Name)
		}
		names[t.Name] = true
		units := make([]regmap.Unit, len(t.Units))
		for i, u := range t.Units {
			units[i] = u.Unit
			key := u.ProductKey + "/" + u.Device
			switch {
			case u.ProductKey == "":
				return nil, fmt.Errorf("%w: %s: %s needs a product_key", ErrUnit, t.Name, u.Device)
			case u.Secret == "":
				return nil, fmt.Errorf("%w: %s: %s has no secret", ErrUnit, t.Name, u.Device)
			case devices[key]:
				return nil, fmt.Errorf("%w: %s listed twice", ErrUnit, key)
			}
			devices[key] = true
			if maps[u.Map] == nil {
				m, err := loadMap(u.Map)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %s: %w", ErrUnit, t.Name, u.Device, err)
				}
				maps[u.Map] = m
			}
		}
		if err := regmap.ValidateUnits(units); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnit, t.Name, err)
		}
	}
	return maps, nil
}

// validateServices checks that every mapped point is a writable register in
// the map of every unit of the product.
func (c Config) validateServices(maps map[string]*regmap.Map) error {
	for pk, services := range c.Services {
		for _, t := range c.Targets {
			for _, u := range t.Units {
				if u.ProductKey != pk {
					continue
				}
				for svc, params := range services {
					for param, point := range params {
						r, ok := maps[u.Map].Register(point)
						if !ok || !r.Writable {
							return fmt.Errorf("%w: %s.%s(%s): %q is not a writable register of map %s", ErrService, pk, svc, param, point, u.Map)
						}
					}
				}
			}
		}
	}
	return nil
}

func (c HAConfig) validate() error {
	switch {
	case c.Node == "":
		return fmt.Errorf("%w: node is required", ErrHA)
	case !hostPort(c.Listen) || !hostPort(c.Peer):
		return fmt.Errorf("%w: listen %q and peer %q must be host:port", ErrHA, c.Listen, c.Peer)
	case c.Interval <= 0 || c.Timeout < 2*c.Interval:
		return fmt.Errorf("%w: interval must be positive and timeout at least twice the interval", ErrHA)
	}
	return nil
}

// token returns the API token, read from TokenFile when set.
func (c CloudConfig) token() (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: token_file: %w", ErrCloud, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// isMapFile reports whether a unit's map names a file rather than a shipped map.
func isMapFile(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// loadMap loads a shipped map by name, or a map file by path.
func loadMap(name string) (*regmap.Map, error) {
	if isMapFile(name) {
		return regmap.Load(name)
	}
	return regmap.Shipped(name)
}
