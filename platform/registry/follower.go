package registry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// rejectLogEvery is how often refused change-log records are logged: the
// first of a burst at once, the rest counted into the next line.
const rejectLogEvery = 10 * time.Second

// Follower applies the records of the change log to the registry. A record
// that is forged, malformed or refused by the registry changes nothing: it
// is counted by reason, logged once per burst and passed over, so one bad
// record never stops the node from following the log.
type Follower struct {
	r        *Registry
	keys     *Keys
	log      *slog.Logger
	rejected *prometheus.CounterVec

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

// Reasons of gale_registry_changes_rejected_total. A record not in the
// change-log format at all (e.g. bare JSON) is malformed; one in the format
// whose MAC does not verify is bad_mac.
const (
	RejectBadMAC     = "bad_mac"
	RejectMalformed  = "malformed"
	RejectBadSecret  = "bad_secret"
	RejectInvalid    = "invalid"
	RejectNotApplied = "not_applied"
)

// NewFollower returns a follower applying records to r, opened with keys.
func NewFollower(r *Registry, keys *Keys, log *slog.Logger, reg prometheus.Registerer) *Follower {
	f := &Follower{r: r, keys: keys, log: log,
		rejected: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "gale_registry_changes_rejected_total",
			Help: "Registry change-log records refused, by reason (bad_mac: not made with the cluster key).",
		}, []string{"reason"}),
	}
	for _, reason := range []string{RejectBadMAC, RejectMalformed, RejectBadSecret, RejectInvalid, RejectNotApplied} {
		f.rejected.WithLabelValues(reason)
	}
	return f
}

// Handle applies the record at offset, read under message key. It returns
// an error only when the context ended before the change was stored, so
// that it is read again; a refused record, or one the registry could not
// store, is counted and returns nil (the node never crash-loops on a record).
func (f *Follower) Handle(ctx context.Context, key, record []byte, offset int64) error {
	c, err := f.keys.OpenChange(key, record)
	if err == nil {
		if err = f.r.Apply(ctx, c); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	reason := rejectReason(err)
	f.rejected.WithLabelValues(reason).Inc()
	f.logRejected(reason, offset, err)
	return nil
}

// rejectReason maps OpenChange's and Apply's errors to a reason label.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, ErrChangeMAC):
		return RejectBadMAC
	case errors.Is(err, ErrChangeMalformed):
		return RejectMalformed
	case errors.Is(err, ErrSealed):
		return RejectBadSecret
	case errors.Is(err, ErrInvalid):
		return RejectInvalid
	}
	return RejectNotApplied
}

// logRejected logs the first refusal of a burst and counts the rest into
// the next line, at most one line every rejectLogEvery.
func (f *Follower) logRejected(reason string, offset int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.lastLog) < rejectLogEvery {
		f.suppressed++
		return
	}
	f.log.Warn("registry change record refused; it changes nothing", "reason", reason, "offset", offset, "err", err,
		"refusedSinceLastLine", f.suppressed)
	f.lastLog, f.suppressed = time.Now(), 0
}
