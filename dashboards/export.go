package dashboards

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"
)

// TokenEnv is the environment variable the exported data source
// provisioning reads the Gale token from, so the token is not written to disk.
const TokenEnv = "GALE_TOKEN"

// Export writes the dashboards and Grafana file provisioning into dir:
//
//	dir/dashboards/*.json                       the dashboards
//	dir/provisioning/dashboards/gale.yaml       a provider loading them into the Gale folder
//	dir/provisioning/datasources/gale.yaml      the Gale data source (token from $GALE_TOKEN)
//	dir/prometheus/gale-scrape.yml              a Prometheus config scraping Gale (optional)
//
// Copy (or mount) dir/provisioning/* into Grafana's provisioning directory;
// the provider points at dir/dashboards by its absolute path.
func Export(dir string, ds []*Dashboard, galeURL string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("export dir %q: %w", dir, err)
	}
	files := map[string][]byte{filepath.Join(abs, "prometheus", "gale-scrape.yml"): ScrapeConfig()}
	for _, d := range ds {
		files[filepath.Join(abs, "dashboards", d.File)] = d.JSON
	}
	provider := map[string]any{
		"apiVersion": 1,
		"providers": []map[string]any{{
			"name": "gale", "orgId": 1, "folder": FolderTitle, "folderUid": FolderUID, "type": "file",
			"disableDeletion": false, "allowUiUpdates": false, "updateIntervalSeconds": 60,
			"options": map[string]any{"path": filepath.Join(abs, "dashboards")},
		}},
	}
	src := Datasource{GaleURL: galeURL}
	datasource := map[string]any{
		"apiVersion": 1,
		"datasources": []map[string]any{{
			"name": datasourceName, "uid": DatasourceUID, "type": "prometheus", "access": "proxy", "orgId": 1,
			"url": src.url(), "editable": false, "jsonData": src.jsonData(),
			"secureJsonData": map[string]string{"httpHeaderValue1": "Bearer ${" + TokenEnv + "}"},
		}},
	}
	for name, v := range map[string]any{"dashboards": provider, "datasources": datasource} {
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, err
		}
		files[filepath.Join(abs, "provisioning", name, "gale.yaml")] = append([]byte("# Written by `gale dashboards export`.\n"), b...)
	}
	var written []string
	for path, b := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		written = append(written, path)
	}
	sort.Strings(written)
	return written, nil
}
