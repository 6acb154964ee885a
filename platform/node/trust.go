package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
)

// clusterKeys loads the cluster key, generating DataDir/cluster.key for a
// node configured without one.
func (n *Node) clusterKeys() (*registry.Keys, error) {
	path := n.cfg.ClusterKeyFile
	if path == filepath.Join(n.cfg.DataDir, DefaultClusterKeyFile) {
		made, err := registry.EnsureKeyFile(path)
		if err != nil {
			return nil, err
		}
		if made {
			n.log.Info("generated a cluster key; every node of a cluster needs this same file as clusterKeyFile", "path", path)
		}
	}
	return registry.LoadKeyFile(path)
}

// EnsureClusterKey creates a cluster key file at path unless one exists,
// for callers that start several nodes sharing it (set as their ClusterKeyFile).
func EnsureClusterKey(path string) error {
	_, err := registry.EnsureKeyFile(path)
	return err
}

// startEmbedded starts the node's own Kafka. With kafka.sasl configured it
// accepts that one user only, the node itself.
func startEmbedded(cfg bus.Config) (*bus.Embedded, error) {
	var sec bus.Security
	if cfg.SASL.Mechanism != "" {
		pass, err := bus.ReadSecretFile(cfg.SASL.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("embedded kafka user: %w", err)
		}
		sec.Users = []bus.User{{Name: cfg.SASL.Username, Password: pass}}
	}
	return bus.StartEmbeddedSecure(cfg.EmbeddedAddr, cfg.DataDir, cfg.SyncWrites, EmbeddedLog(cfg), sec)
}

// EmbeddedLog is what an embedded broker configured by cfg keeps: Gale's
// topics with cfg's partitions, every record of the registry's change log
// (it is the registry), the other topics' records for cfg.EmbeddedRetention
// and up to cfg.EmbeddedRetentionBytes a partition.
func EmbeddedLog(cfg bus.Config) bus.Log {
	log := bus.Log{Partitions: cfg.Partitions, Retention: cfg.EmbeddedRetention, RetentionBytes: int64(cfg.EmbeddedRetentionBytes),
		Kept: []string{api.TopicRegistry}}
	for _, t := range api.Topics() {
		if t != api.TopicRegistry {
			log.Retained = append(log.Retained, t)
		}
	}
	return log
}

// SecureDataDir makes everything under dir the owner's only: directories
// 0700, files 0600 (the registry, the TSDB, the Kafka log, the admin token,
// the cluster key, the rules). A node fixes an older data dir at start.
// Files that vanish meanwhile (a compacting TSDB or Kafka log) are passed over.
func SecureDataDir(dir string) error {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		switch {
		case d.IsDir():
			want = 0o700
		case !d.Type().IsRegular():
			return nil // symlinks, sockets: not ours to change
		}
		info, err := d.Info()
		if err == nil && info.Mode().Perm() != want {
			err = os.Chmod(path, want)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("restrict data dir %q to its owner: %w", dir, err)
	}
	return nil
}
