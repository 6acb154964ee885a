// Command gale is the Gale IoT platform: cloud node, edge gateway, twin
// fleet, load generator and test tools in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gale-iot/gale/dashboards"
	"github.com/gale-iot/gale/loadgen"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = []command{
	{"up", "run the whole platform on one machine with embedded engines and the demo fleet", runUp},
	{"edge", "run an edge gateway: poll Modbus devices, publish them as sub-devices, buffer outages", runEdge},
	{"twins", "run a twin fleet (Modbus gateways, direct MQTT devices, control API) against a cloud", runTwins},
	{"loadgen", "load-test Gale (or any MQTT broker) and check that no acknowledged sample is lost", packageMain(loadgen.Main, loadgen.ErrUsage)},
	{"rules", "rules test FILE...: run rule unit tests", runRules},
	{"scenario", "scenario run [--junit FILE] FILE...: run scenarios on an in-process stack", runScenario},
	{"dashboards", "dashboards push|export|lint|check: Grafana dashboards and their data source", packageMain(dashboards.Main, dashboards.ErrUsage)},
	{"cloud", "run one cloud node from a config file", runCloud},
	{"kafka", "run the embedded Kafka broker alone", runKafka},
	{"certs", "certs init|device: the development CA (DATA/tls) and device certificates for mutual TLS", runCerts},
	{"version", "print the version", func(_ context.Context, _ []string, w io.Writer) error {
		_, err := fmt.Fprintln(w, "gale", version)
		return err
	}},
}

// packageMain is a command whose flags and run live in a package of their
// own: its Main, which explains a usage mistake on stderr and returns usage.
func packageMain(main func(ctx context.Context, args []string, stdout, stderr io.Writer) error, usage error) func(context.Context, []string, io.Writer) error {
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		err := main(ctx, args, stdout, os.Stderr)
		if errors.Is(err, usage) {
			return errUsage // explained on stderr
		}
		return err
	}
}

// errUsage marks errors already explained by a usage message, and usage
// errors (exit code 2).
var errUsage = errors.New("usage")

// usageError is a command-line mistake explained in one line.
type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

// Gale's default GOGC and soft memory limit: the hot path allocates per
// message, and a higher GC target trades memory for throughput (measured in
// docs/benchmarks.md); the limit makes the GC work harder before a large live
// heap (many sessions) times GOGC outgrows the machine. GOGC and GOMEMLIMIT
// in the environment win.
const (
	gcPercent   = 400
	memoryLimit = 4 << 30
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if err != errUsage { // a bare errUsage follows a usage message already printed
			fmt.Fprintln(os.Stderr, "gale:", oneLine(err))
		}
		os.Exit(exitCode(err))
	}
}

// oneLine is err's message on one line: a failure ends with one line that
// names its cause, even when the cause (a YAML decoder's) spans several.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		return errUsage
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout)
		}
	}
	fmt.Fprintf(stderr, "gale: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return errUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: gale COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun 'gale COMMAND -h' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting
// and prints its flags only when asked (-h).
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gale "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parseFlags reports a mistake in one line
	return fs
}

// parseFlags parses args, which are flags only.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := flagError(fs, fs.Parse(args)); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q ('%s -h' lists the flags)", fs.Arg(0), fs.Name())}
	}
	return nil
}

// flagError turns fs.Parse's err into Gale's: -h prints the flags, a
// mistake is a one-line usage error.
func flagError(fs *flag.FlagSet, err error) error {
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(os.Stderr)
		fmt.Fprintf(os.Stderr, "usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return errUsage
	case err != nil:
		return usageError{fmt.Sprintf("%v ('%s -h' lists the flags)", err, fs.Name())}
	}
	return nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
