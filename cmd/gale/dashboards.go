package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/gale-iot/gale/dashboards"
)

// runDashboards is `gale dashboards push|export|lint|check`; the commands live in package dashboards.
func runDashboards(ctx context.Context, args []string, stdout io.Writer) error {
	err := dashboards.Main(ctx, args, stdout, os.Stderr)
	if errors.Is(err, dashboards.ErrUsage) {
		return errUsage // explained on stderr
	}
	return err
}
