package main

import (
	"context"
	"io"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/edge"
)

// runEdge runs an edge gateway from a config file (see platform/edge.Config).
func runEdge(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("edge")
	path := fs.String("config", "", "edge gateway config file (YAML)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"edge: --config FILE is required"}
	}
	cfg, err := config.Load[edge.Config](*path)
	if err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	e, err := edge.New(cfg, log)
	if err != nil {
		return err
	}
	return e.Run(ctx)
}
