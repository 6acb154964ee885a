package direct

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
)

// APISecrets looks secrets up through the cloud's HTTP API at apiURL
// (GET /api/v1/devices/{pk}/{dk}, which shows an admin the secret); an
// https apiURL is verified with tlsCfg when set, else the system's roots.
func APISecrets(apiURL, token string, tlsCfg *tls.Config) SecretFunc {
	client := &http.Client{Timeout: 10 * time.Second}
	if tlsCfg != nil {
		client.Transport = &http.Transport{TLSClientConfig: tlsCfg}
	}
	return func(pk, dk string) (string, error) {
		u := strings.TrimSuffix(apiURL, "/") + "/api/v1/devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dk)
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return "", fmt.Errorf("api url: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("cloud API: %w", err)
		}
		defer resp.Body.Close()
		var out struct {
			api.Device
			Error string `json:"error"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
			return "", fmt.Errorf("cloud API: %s: %w", resp.Status, err)
		}
		switch {
		case resp.StatusCode != http.StatusOK:
			return "", fmt.Errorf("cloud API: %s: %s", resp.Status, out.Error)
		case out.Secret == "":
			return "", errors.New("cloud API shows no secret (is the token an admin's?)")
		}
		return out.Secret, nil
	}
}
