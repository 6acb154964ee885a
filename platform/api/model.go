package api

import (
	"encoding/json"
	"math"
	"strings"
)

// Product is a device type with its thing model.
type Product struct {
	Key         string     `json:"productKey" yaml:"productKey"`
	Name        string     `json:"name" yaml:"name"`
	Description string     `json:"description,omitempty" yaml:"description,omitempty"`
	Model       ThingModel `json:"model" yaml:"model"`
	// Org owns the product; empty is the public model library, read by every org.
	Org string `json:"org,omitempty" yaml:"org,omitempty"`
}

// ThingModel describes what a product's devices report and accept.
type ThingModel struct {
	Attributes    []Attribute    `json:"attributes,omitempty" yaml:"attributes,omitempty"`
	Measurepoints []Measurepoint `json:"measurepoints,omitempty" yaml:"measurepoints,omitempty"`
	Events        []Event        `json:"events,omitempty" yaml:"events,omitempty"`
	Services      []Service      `json:"services,omitempty" yaml:"services,omitempty"`
}

// Value types of measurepoints, attributes and parameters.
const (
	TypeFloat = "float"
	TypeInt   = "int"
	TypeBool  = "bool"
	TypeEnum  = "enum"
	TypeText  = "string"
)

// Attribute is a static property of a device.
type Attribute struct {
	ID   string `json:"id" yaml:"id"`
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	Type string `json:"type" yaml:"type"`
	Unit string `json:"unit,omitempty" yaml:"unit,omitempty"`
}

// Measurepoint is a time series a device reports.
type Measurepoint struct {
	ID   string   `json:"id" yaml:"id"`
	Name string   `json:"name,omitempty" yaml:"name,omitempty"`
	Type string   `json:"type" yaml:"type"`
	Unit string   `json:"unit,omitempty" yaml:"unit,omitempty"`
	Min  *float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max  *float64 `json:"max,omitempty" yaml:"max,omitempty"`
	// Resolution is the step of the point's values (0.1 for a wind speed in
	// tenths of m/s): the device reports multiples of it. 0 means any value.
	Resolution float64 `json:"resolution,omitempty" yaml:"resolution,omitempty"`
	// Quality says the device may send a quality flag with the value.
	Quality bool `json:"quality,omitempty" yaml:"quality,omitempty"`
}

// Round returns v as the device reports it: the nearest multiple of the
// resolution, or v itself without one.
func (mp Measurepoint) Round(v float64) float64 {
	if mp.Resolution <= 0 {
		return v
	}
	return math.Round(v/mp.Resolution) * mp.Resolution
}

// Event is something a device reports happening.
type Event struct {
	ID       string  `json:"id" yaml:"id"`
	Name     string  `json:"name,omitempty" yaml:"name,omitempty"`
	Severity string  `json:"severity,omitempty" yaml:"severity,omitempty"`
	Output   []Param `json:"output,omitempty" yaml:"output,omitempty"`
}

// Service is an operation a device performs on request.
type Service struct {
	ID     string  `json:"id" yaml:"id"`
	Name   string  `json:"name,omitempty" yaml:"name,omitempty"`
	Input  []Param `json:"input,omitempty" yaml:"input,omitempty"`
	Output []Param `json:"output,omitempty" yaml:"output,omitempty"`
}

// Param is an input or output parameter of a service or event. Min and
// Max bound a number a service call may pass.
type Param struct {
	ID   string   `json:"id" yaml:"id"`
	Type string   `json:"type" yaml:"type"`
	Unit string   `json:"unit,omitempty" yaml:"unit,omitempty"`
	Min  *float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max  *float64 `json:"max,omitempty" yaml:"max,omitempty"`
}

// Device is one device of a product.
type Device struct {
	ProductKey string `json:"productKey"`
	DeviceKey  string `json:"deviceKey"`
	Name       string `json:"name,omitempty"`
	// Secret is shown to admins only.
	Secret  string `json:"secret,omitempty"`
	Enabled bool   `json:"enabled"`
	Org     string `json:"org"`
	Site    string `json:"site,omitempty"`
	// GatewayProductKey and GatewayDeviceKey name the gateway a sub-device sits behind.
	GatewayProductKey string         `json:"gatewayProductKey,omitempty"`
	GatewayDeviceKey  string         `json:"gatewayDeviceKey,omitempty"`
	Attributes        map[string]any `json:"attributes,omitempty"`
	CreatedAt         int64          `json:"createdAt,omitempty"`
}

// Asset is a node of the asset tree: an org, a site, or a device's place.
type Asset struct {
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name,omitempty"`
	Parent   string   `json:"parent,omitempty"`
	Org      string   `json:"org"`
	Children []*Asset `json:"children,omitempty"`
	// Devices lists the devices at a site as "productKey/deviceKey".
	Devices []string `json:"devices,omitempty"`
}

// Asset kinds.
const (
	AssetOrg  = "org"
	AssetSite = "site"
)

// MetricName maps a measurepoint identifier to its TSDB metric name:
// "." becomes "_", and any other character invalid in a metric name becomes "_".
func MetricName(point string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			return r
		}
		return '_'
	}, point)
}

// Alert is one alert episode: a rule's condition holding for one device (or group).
type Alert struct {
	ID       int64  `json:"id"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	// Source is "stream" (event engine) or "promql" (PromQL alerting rule).
	Source string `json:"source"`
	// Key identifies what the alert is about: "pk/dk", a group such as "site=north", or PromQL labels.
	Key    string `json:"key"`
	Device string `json:"device,omitempty"`
	Site   string `json:"site,omitempty"`
	Org    string `json:"org,omitempty"`
	// State is pending, firing or resolved.
	State   string  `json:"state"`
	Value   float64 `json:"value"`
	Message string  `json:"message,omitempty"`
	// Times are Unix ms in event time: when the condition began, when the alert fired and resolved.
	StartedAt  int64 `json:"startedAt"`
	FiredAt    int64 `json:"firedAt,omitempty"`
	ResolvedAt int64 `json:"resolvedAt,omitempty"`
	// Acknowledgement.
	AckedBy    string `json:"ackedBy,omitempty"`
	AckComment string `json:"ackComment,omitempty"`
	AckedAt    int64  `json:"ackedAt,omitempty"`
}

// Alert states.
const (
	AlertPending  = "pending"
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// AlertEvent is an alert change as carried on gale.events (JSON).
type AlertEvent struct {
	Type  string `json:"type"` // EventTypeAlert
	Alert Alert  `json:"alert"`
}

// EventTypeAlert marks an AlertEvent on gale.events.
const EventTypeAlert = "alert"

// Command is a service invocation on a device, as stored and as carried on gale.commands.
type Command struct {
	ID         string          `json:"id"`
	ProductKey string          `json:"productKey"`
	DeviceKey  string          `json:"deviceKey"`
	Service    string          `json:"service"`
	Params     json.RawMessage `json:"params,omitempty"`
	// Status is queued, sent, succeeded, failed or expired.
	Status string `json:"status"`
	// Code, Message and Output are the device's reply.
	Code      int             `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	CreatedAt int64           `json:"createdAt"`
	ExpiresAt int64           `json:"expiresAt"`
	SentAt    int64           `json:"sentAt,omitempty"`
	RepliedAt int64           `json:"repliedAt,omitempty"`
	// Org is the device's org, set on the commands' Kafka records.
	Org string `json:"org,omitempty"`
}

// Command statuses.
const (
	CommandQueued    = "queued"
	CommandSent      = "sent"
	CommandSucceeded = "succeeded"
	CommandFailed    = "failed"
	CommandExpired   = "expired"
)

// RegistryChange is one registry mutation as carried on the compacted gale.registry
// topic: every node applies every change to its local registry.
type RegistryChange struct {
	// Kind is product, device, asset or token; Key is the entity's key within its kind.
	Kind    string   `json:"kind"`
	Key     string   `json:"key"`
	Deleted bool     `json:"deleted,omitempty"`
	Product *Product `json:"product,omitempty"`
	Device  *Device  `json:"device,omitempty"`
	Asset   *Asset   `json:"asset,omitempty"`
	// TokenName is the name of a token whose hash is Key (records made
	// before accounts: such a token is a cluster admin's).
	TokenName string `json:"tokenName,omitempty"`
	// Token is the token (never its secret) whose SHA-256 hash is Key.
	Token *Token `json:"token,omitempty"`
	// User is the user whose name is Key; its password hash travels sealed.
	User *User `json:"user,omitempty"`
	// SealedSecret is the device's secret, or the user's password hash,
	// encrypted with the cluster key (AES-GCM): on the change log
	// Device.Secret and User.PasswordHash are always empty.
	SealedSecret []byte `json:"sealedSecret,omitempty"`
	// Origin is the node that made the change; it applied it already and skips it.
	Origin string `json:"origin"`
}

// Kinds of registry changes.
const (
	ChangeProduct = "product"
	ChangeDevice  = "device"
	ChangeAsset   = "asset"
	ChangeToken   = "token"
	ChangeUser    = "user"
)

// Roles of tokens and users, from the least to the most allowed.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles: viewer 1, operator 2, admin 3; 0 for an unknown role.
func RoleRank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Token kinds: an API token (an application account) or a user's login session.
const (
	TokenAPI     = "api"
	TokenSession = "session"
)

// Token is an API token or a login session as the registry keeps it: never
// its secret, which is shown once when it is made and stored only hashed.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Org scopes the token to one org; empty is all orgs (a cluster token).
	Org  string `json:"org"`
	Role string `json:"role"`
	Kind string `json:"kind"`
	// User is the user a session belongs to.
	User      string `json:"user,omitempty"`
	CreatedAt int64  `json:"createdAt"`
	// ExpiresAt is in Unix milliseconds; 0 never expires.
	ExpiresAt int64 `json:"expiresAt,omitempty"`
	Revoked   bool  `json:"revoked,omitempty"`
	// LastUsedAt is when this node last authenticated the token (Unix
	// milliseconds, kept by each node, written at most once a minute).
	LastUsedAt int64 `json:"lastUsedAt,omitempty"`
}

// User is a person's account: a name and password, scoped to an org (empty:
// all orgs) with a role.
type User struct {
	Name      string `json:"name"`
	Org       string `json:"org"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"createdAt"`
	// PasswordHash (bcrypt) is set only inside the registry and is never
	// answered by the API; on the change log it travels sealed.
	PasswordHash string `json:"passwordHash,omitempty"`
}
