package edge

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Queue is the edge's durable store-and-forward queue of samples.
//
// Every polled sample is written here before anything is sent, and removed
// only once the cloud acknowledged it (QoS 1 PUBACK and a 200 reply), so the
// queue is the single source of truth: a sample is either acknowledged or on
// disk, whatever happens to the process.
//
// It is a SQLite table (modernc.org/sqlite, pure Go) rather than segment
// files because the queue needs three things SQLite gives for free and
// segments make us write by hand: removal of arbitrary acknowledged items
// (live posts and replayed batches are acknowledged out of step, and
// samples of a sub-device that cannot log in stay behind), atomic crash
// recovery of the last write (the WAL is replayed on open, a torn segment
// tail would need its own checksums), and a size bound that drops the
// oldest rows without rewriting files. The poller pushes each poll round's
// samples in one transaction (tens of microseconds with the WAL, plus a few
// per sample). With synchronous=NORMAL a committed sample survives a crash
// of the process (kill -9); Fsync (synchronous=FULL) makes it survive a
// power loss too.
//
// Ids only grow (AUTOINCREMENT), so "id <= n" names a prefix of the queue
// in arrival order. A Queue is safe for concurrent use.
type Queue struct {
	db       *sql.DB
	insert   *sql.Stmt
	maxBytes int64
	pushed   signal

	mu    sync.Mutex
	items int64
	bytes int64
}

// Item is one queued sample of a device: the params of a
// thing.measurepoint.post ({"measurepoints":{…},"time":ms}).
type Item struct {
	ID         int64
	ProductKey string
	DeviceKey  string
	// Time is the sample time in Unix milliseconds.
	Time   int64
	Params []byte
}

// OpenQueue opens (or creates) the queue at path. It holds at most maxBytes
// of params; beyond that Push drops the oldest items.
func OpenQueue(path string, maxBytes int64, fsync bool) (*Queue, error) {
	mode := "NORMAL"
	if fsync {
		mode = "FULL"
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous("+mode+")&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; it also keeps Push and its size bound atomic
	q := &Queue{db: db, maxBytes: maxBytes}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS samples (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		product TEXT NOT NULL,
		device TEXT NOT NULL,
		time INTEGER NOT NULL,
		params BLOB NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(LENGTH(params)), 0) FROM samples`).Scan(&q.items, &q.bytes); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	if q.insert, err = db.Prepare(`INSERT INTO samples (product, device, time, params) VALUES (?, ?, ?, ?)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	return q, nil
}

// Close closes the queue.
func (q *Queue) Close() error {
	q.insert.Close()
	return q.db.Close()
}

// Len returns the number of queued items and their params' bytes.
func (q *Queue) Len() (items, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items, q.bytes
}

// Pushed returns a channel closed at the next Push.
func (q *Queue) Pushed() <-chan struct{} { return q.pushed.C() }

// Push appends items in one transaction (their IDs are assigned in order)
// and, if the queue is then above its size, drops the oldest items; it
// returns how many it dropped. Either all items are queued or none is.
func (q *Queue) Push(items ...Item) (dropped int, err error) {
	if len(items) == 0 {
		return 0, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	tx, err := q.db.Begin()
	if err != nil {
		return 0, fmt.Errorf("queue push: %w", err)
	}
	defer tx.Rollback() // after Commit, a no-op
	// The one connection's statement, prepared once.
	ins := tx.Stmt(q.insert)
	items0, bytes0 := q.items, q.bytes
	defer func() {
		if err != nil { // rolled back: the counts are as before
			q.items, q.bytes = items0, bytes0
		}
	}()
	for _, it := range items {
		if _, err := ins.Exec(it.ProductKey, it.DeviceKey, it.Time, it.Params); err != nil {
			return 0, fmt.Errorf("queue push: %w", err)
		}
		q.items++
		q.bytes += int64(len(it.Params))
	}
	for q.bytes > q.maxBytes && q.items > 1 {
		n, size, err := deleteReturning(tx, `DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?) RETURNING LENGTH(params)`,
			max(1, q.items/100))
		if err != nil {
			return 0, fmt.Errorf("queue drop oldest: %w", err)
		}
		dropped += n
		q.items -= int64(n)
		q.bytes -= size
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("queue push: %w", err)
	}
	q.pushed.Notify()
	return dropped, nil
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	Query(query string, args ...any) (*sql.Rows, error)
}

// deleteReturning runs a DELETE … RETURNING LENGTH(params) and sums what it removed.
func deleteReturning(db querier, query string, args ...any) (n int, size int64, err error) {
	rows, err := db.Query(query, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var l int64
		if err := rows.Scan(&l); err != nil {
			return n, size, err
		}
		n++
		size += l
	}
	return n, size, rows.Err()
}

// Items returns up to n items with after < ID <= upTo, oldest first.
func (q *Queue) Items(after, upTo int64, n int) ([]Item, error) {
	rows, err := q.db.Query(`SELECT id, product, device, time, params FROM samples WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`, after, upTo, n)
	if err != nil {
		return nil, fmt.Errorf("queue read: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ID, &it.ProductKey, &it.DeviceKey, &it.Time, &it.Params); err != nil {
			return nil, fmt.Errorf("queue read: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue read: %w", err)
	}
	return out, nil
}

// LastID returns the highest id ever assigned (0 for a new queue).
func (q *Queue) LastID() (int64, error) {
	var id int64
	err := q.db.QueryRow(`SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'samples'), 0)`).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queue last id: %w", err)
	}
	return id, nil
}

// Delete removes acknowledged items; ids already gone are ignored.
func (q *Queue) Delete(ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size, err := deleteReturning(q.db, `DELETE FROM samples WHERE id IN (?`+strings.Repeat(",?", len(ids)-1)+`) RETURNING LENGTH(params)`, args...)
	q.items -= int64(n)
	q.bytes -= size
	if err != nil {
		return fmt.Errorf("queue delete: %w", err)
	}
	return nil
}

// signal wakes every goroutine waiting on it.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel closed at the next Notify.
func (s *signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes the current waiters.
func (s *signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
