package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/gale-iot/gale/platform/rules"
)

// runRules runs `gale rules test FILE...`: rule unit tests, exit 1 on any failure.
func runRules(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return fmt.Errorf("%w: gale rules test FILE...", errUsage)
	}
	files := args[1:]
	if len(files) == 0 {
		return errors.New("gale rules test: give at least one rule test file")
	}
	passed, failed := 0, 0
	for _, f := range files {
		results, err := rules.RunTestFile(f)
		if err != nil {
			return err
		}
		for _, r := range results {
			if len(r.Failures) == 0 {
				passed++
				fmt.Fprintf(stdout, "PASS %s: %s\n", r.File, r.Name)
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", r.File, r.Name)
			for _, msg := range r.Failures {
				fmt.Fprintf(stdout, "     %s\n", msg)
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fmt.Errorf("%d rule test(s) failed", failed)
	}
	return nil
}
