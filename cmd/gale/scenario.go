package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gale-iot/gale/scenarios"
)

// runScenario runs `gale scenario run [--junit FILE] FILE...`: each scenario
// on a fresh in-process cloud and plant, a text summary per scenario on
// stdout, one line per failed assertion on stderr, exit 1 on any failure.
// Scenarios that run on containers only are skipped, with a line saying so.
func runScenario(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(os.Stderr, "usage: gale scenario run [--junit FILE] [--log-level LEVEL] [--report-to URL --token-file FILE] FILE...")
		return errUsage
	}
	fs := newFlagSet("scenario run")
	junit := fs.String("junit", "", "write a JUnit XML report (one test case per assertion) to `FILE`")
	level := fs.String("log-level", "error", "log level of the stack: debug, info, warn or error")
	reportTo := fs.String("report-to", "", "post each run's report to the runs page (the console's Runs) of the node at `URL`")
	tokenFile := fs.String("token-file", "data/admin.token", "API token for --report-to")
	if err := flagError(fs, fs.Parse(args[1:])); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		return fmt.Errorf("%w: gale scenario run: give at least one scenario file", errUsage)
	}
	log, err := newLogger(*level)
	if err != nil {
		return err
	}
	opts := []scenarios.Option{scenarios.WithLogger(log)}
	if *reportTo != "" {
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		withReport, err := scenarios.WithReportTo(*reportTo, strings.TrimSpace(string(tok)))
		if err != nil {
			return fmt.Errorf("--report-to: %w", err)
		}
		opts = append(opts, withReport)
	}
	var runs []scenarios.RunOutcome
	failed := 0
	for _, f := range files {
		res, err := scenarios.Run(ctx, f, opts...)
		if errors.Is(err, scenarios.ErrOtherCloud) {
			// Container scenarios run in the container suite (make test-containers).
			fmt.Fprintf(stdout, "SKIP %s: %v\n", f, err)
			continue
		}
		run := scenarios.RunOutcome{Result: res, Err: err}
		runs = append(runs, run)
		if werr := run.WriteSummary(stdout); werr != nil {
			return werr
		}
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "%s: %s\n", f, firstLine(err.Error()))
			if ctx.Err() != nil {
				break
			}
		}
		for _, a := range res.Failed() {
			failed++
			fmt.Fprintf(os.Stderr, "%s:%d: %s: expected %s, got %s\n", f, a.Line, a.Name, a.Expected, a.Actual)
		}
	}
	if *junit != "" {
		if err := writeJUnit(*junit, runs); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d scenario failure(s)", failed)
	}
	if len(runs) == 0 {
		return errors.New("no scenario given runs in-process: run container scenarios with make test-containers")
	}
	return nil
}

func writeJUnit(path string, runs []scenarios.RunOutcome) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	if err := scenarios.WriteJUnit(f, runs); err != nil {
		f.Close()
		return fmt.Errorf("junit report: %w", err)
	}
	return f.Close()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
