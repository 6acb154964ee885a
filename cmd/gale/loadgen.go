package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/gale-iot/gale/loadgen"
)

// runLoadgen is `gale loadgen`; the flags and the run live in package loadgen.
func runLoadgen(ctx context.Context, args []string, stdout io.Writer) error {
	err := loadgen.Main(ctx, args, stdout, os.Stderr)
	if errors.Is(err, loadgen.ErrUsage) {
		return errUsage // the flag package has explained it on stderr
	}
	return err
}
