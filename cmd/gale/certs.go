package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gale-iot/gale/platform/pki"
)

// runCerts manages the development CA of DATA/tls (the one gale up --tls makes).
func runCerts(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: gale certs init|device [flags]\n\n  init    make (or keep) the development CA and server certificate in DATA/tls\n  device  issue a device certificate (CN productKey/deviceKey) from that CA")
		return errUsage
	}
	fs := newFlagSet("certs " + args[0])
	dataDir := fs.String("data-dir", "data", "data directory whose tls/ holds the CA")
	switch args[0] {
	case "init":
		hosts := fs.String("hosts", "", "more host names and IP addresses for the server certificate, comma-separated (127.0.0.1, ::1 and localhost are always in)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		files, err := pki.EnsureDev(filepath.Join(*dataDir, "tls"), splitList(*hosts), time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "CA:          %s\nServer cert: %s\nServer key:  %s\n", files.CA, files.Cert, files.Key)
		return nil
	case "device":
		pk := fs.String("pk", "", "product key of the device")
		dk := fs.String("dk", "", "device key of the device")
		out := fs.String("out", "", "directory for {pk}_{dk}.crt and .key (default DATA/tls/devices)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *pk == "" || *dk == "" {
			return usageError{"certs device: --pk and --dk are required"}
		}
		files := pki.DevFilesIn(filepath.Join(*dataDir, "tls"))
		ca, err := pki.LoadCA(files.CA, files.CAKey)
		if err != nil {
			return fmt.Errorf("%w (run gale up --tls or gale certs init first)", err)
		}
		dir := *out
		if dir == "" {
			dir = filepath.Join(*dataDir, "tls", pki.DevicesDir)
		}
		certFile, keyFile := pki.DeviceFiles(dir, *pk, *dk)
		if err := ca.IssueDevice(certFile, keyFile, *pk, *dk, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Device %s/%s:\n  cert: %s\n  key:  %s\n  CA:   %s\n", *pk, *dk, certFile, keyFile, files.CA)
		return nil
	}
	return usageError{fmt.Sprintf("certs: unknown subcommand %q (want init or device)", args[0])}
}
