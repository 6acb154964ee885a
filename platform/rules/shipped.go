package rules

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed shipped/*.yaml
var shipped embed.FS

// InstallShipped writes Gale's shipped rule files (and their tests) into dir
// when dir has no rule files yet, so users can edit and reload them.
func InstallShipped(dir string) error {
	if files, err := Files(dir); err != nil || len(files) > 0 {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create rules dir: %w", err)
	}
	entries, err := shipped.ReadDir("shipped")
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := shipped.ReadFile("shipped/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("install shipped rules: %w", err)
		}
	}
	return nil
}

// Files lists the rule files of dir: *.yaml except rule tests (*_test.yaml).
func Files(dir string) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, "_test.yaml") {
			out = append(out, f)
		}
	}
	return out, nil
}
