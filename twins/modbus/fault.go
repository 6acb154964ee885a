package modbus

import (
	"fmt"

	mb "github.com/simonvetter/modbus"

	"github.com/gale-iot/gale/platform/api/regmap"
)

// FaultKind names a gateway fault.
type FaultKind string

// The injectable gateway faults.
const (
	// FaultTimeout: requests get no answer; after the gateway's TimeoutHold
	// (or when the fault is cleared) the connection is dropped.
	FaultTimeout FaultKind = "timeout"
	// FaultException: requests are answered with exception Code.
	FaultException FaultKind = "exception"
	// FaultStale: values freeze and the heartbeat counter stops.
	FaultStale FaultKind = "stale"
	// FaultMaxClients: the gateway restarts accepting only Clients connections
	// (open connections are dropped).
	FaultMaxClients FaultKind = "max_clients"
	// FaultByteOrder: registers are sent in Order (default: each register's
	// own order with its words swapped) instead of the map's.
	FaultByteOrder FaultKind = "byte_order"
)

// Fault is an injected gateway fault, as the control API and the fleet
// config spell it, e.g. {"fault":"exception","code":4,"unit":3}.
type Fault struct {
	// Kind is the fault.
	Kind FaultKind `json:"fault" yaml:"fault"`
	// Unit limits the fault to one unit id; 0 means every unit.
	// Not used by max_clients.
	Unit uint8 `json:"unit,omitempty" yaml:"unit,omitempty"`
	// Code is the exception code: 1, 2, 3, 4, 5, 6, 8, 10 (0x0A) or 11 (0x0B).
	Code uint8 `json:"code,omitempty" yaml:"code,omitempty"`
	// Clients is the connection limit of max_clients.
	Clients int `json:"clients,omitempty" yaml:"clients,omitempty"`
	// Order is the byte order of byte_order (empty: word-swapped).
	Order regmap.Order `json:"order,omitempty" yaml:"order,omitempty"`
}

// exception returns the library error the server maps to exception code c,
// or nil for a code it cannot send.
func exception(c uint8) error {
	switch c {
	case 0x01:
		return mb.ErrIllegalFunction
	case 0x02:
		return mb.ErrIllegalDataAddress
	case 0x03:
		return mb.ErrIllegalDataValue
	case 0x04:
		return mb.ErrServerDeviceFailure
	case 0x05:
		return mb.ErrAcknowledge
	case 0x06:
		return mb.ErrServerDeviceBusy
	case 0x08:
		return mb.ErrMemoryParityError
	case 0x0A:
		return mb.ErrGWPathUnavailable
	case 0x0B:
		return mb.ErrGWTargetFailedToRespond
	}
	return nil
}

// Validate checks the fault's parameters.
func (f Fault) Validate() error {
	switch f.Kind {
	case FaultTimeout, FaultStale:
	case FaultException:
		if exception(f.Code) == nil {
			return fmt.Errorf("%w: exception code %d (use 1-6, 8, 10 or 11)", ErrFault, f.Code)
		}
	case FaultMaxClients:
		if f.Clients < 1 || f.Clients > 1000 || f.Unit != 0 {
			return fmt.Errorf("%w: max_clients needs clients in 1…1000 and no unit", ErrFault)
		}
	case FaultByteOrder:
		if f.Order != "" && !f.Order.Valid() {
			return fmt.Errorf("%w: byte order %q", ErrFault, f.Order)
		}
	default:
		return fmt.Errorf("%w: unknown fault %q (timeout, exception, stale, max_clients, byte_order)", ErrFault, f.Kind)
	}
	return nil
}

// matches reports whether the fault applies to unit id.
func (f Fault) matches(kind FaultKind, id uint8) bool {
	return f.Kind == kind && (f.Unit == 0 || f.Unit == id)
}
