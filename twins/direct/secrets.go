package direct

import (
	"context"
	"errors"
	"fmt"

	"github.com/gale-iot/gale/platform/apiclient"
)

// APISecrets looks secrets up through the cloud's HTTP API (GET
// /api/v1/devices/{pk}/{dk}, which shows an admin the secret).
func APISecrets(c *apiclient.Client) SecretFunc {
	return func(pk, dk string) (string, error) {
		d, err := c.Device(context.Background(), pk, dk)
		switch {
		case err != nil:
			return "", fmt.Errorf("cloud API: %w", err)
		case d.Secret == "":
			return "", errors.New("cloud API shows no secret (is the token an admin's?)")
		}
		return d.Secret, nil
	}
}
