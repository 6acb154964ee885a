//go:build unix

package testkit

import (
	"syscall"
	"time"
)

// CPUTime is the user and system CPU time of this process so far, 0 if the
// system does not say: what a benchmark divides by its messages for CPU per
// message.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
