package rules

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

//go:embed shipped
var shipped embed.FS

// InstallShipped writes Gale's shipped rule files (and their tests) into dir
// when dir has no streaming rule files yet, and the PromQL rules into
// dir/promql when that does not exist, so users can edit and reload them.
func InstallShipped(dir string) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(filepath.Join(dir, PromQLDir))
	streaming, promql := len(files) == 0, os.IsNotExist(statErr)
	return fs.WalkDir(shipped, "shipped", func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("shipped", path)
		target := filepath.Join(dir, rel)
		isProm := strings.HasPrefix(rel, PromQLDir)
		if e.IsDir() {
			if rel == "." || isProm && promql {
				return os.MkdirAll(target, 0o755)
			}
			return nil
		}
		if isProm && !promql || !isProm && !streaming {
			return nil
		}
		b, err := shipped.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return fmt.Errorf("install shipped rules: %w", err)
		}
		return nil
	})
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
