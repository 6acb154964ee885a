package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// ErrUsage is returned by Main for command-line errors the flag package
// already explained on stderr.
var ErrUsage = errors.New("usage")

// ErrSLOFailed is wrapped by Main's error when the run missed its SLO.
var ErrSLOFailed = errors.New("SLO failed")

// Main is `gale loadgen`: it parses args, runs the load test, prints the
// summary to stdout and the live progress line to stderr, writes the
// reports, and returns an error (failed SLO clauses included) for a
// non-zero exit.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slo, err := ParseSLO(o.slo)
	if err != nil {
		return fmt.Errorf("--slo: %w", err)
	}
	if !o.cfg.Plain {
		tok, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		o.cfg.Token = string(bytes.TrimSpace(tok))
	}
	var progress io.Writer
	if !o.quiet {
		progress = stderr
	}
	g, err := New(o.cfg, log, progress)
	if err != nil {
		return err
	}
	rep, err := g.Run(ctx)
	if err != nil {
		return err
	}
	rep.SLO = slo.Evaluate(rep)
	if err := o.write(rep, stdout); err != nil {
		return err
	}
	if to := o.reportTo; to != "off" && !o.cfg.Plain {
		if err := g.PostRun(context.WithoutCancel(ctx), cmp.Or(to, o.cfg.APIURL), rep); err != nil {
			fmt.Fprintf(stderr, "gale loadgen: the report was not posted to the node's runs page: %v\n", err)
		}
	}
	return verdict(rep)
}

// options are Main's flags: the run's Config and what to do with its report.
type options struct {
	cfg                                    Config
	tokenFile, reportJSON, reportHTML, slo string
	reportTo                               string
	logLevel                               string
	quiet                                  bool
}

// parseArgs parses Main's flags; a mistake is one line on stderr and ErrUsage.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	o := options{cfg: DefaultConfig()}
	cfg := &o.cfg
	fs := flag.NewFlagSet("gale loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "MQTT broker, host:port")
	fs.BoolVar(&cfg.TLS, "tls", false, "connect over TLS (implied by --ca-file and --cert-file)")
	fs.StringVar(&cfg.TLSCAFile, "ca-file", "", "PEM file of the CA that signed the broker's and an https API's certificates (default: system roots; gale up --tls: DATA/tls/ca.crt)")
	fs.StringVar(&cfg.TLSCAFile, "tls-ca", "", "same as --ca-file")
	fs.StringVar(&cfg.TLSCertFile, "cert-file", "", "client certificate for mutual TLS; {pk} and {dk} stand for each device's keys, e.g. data/tls/devices/{pk}_{dk}.crt")
	fs.StringVar(&cfg.TLSKeyFile, "key-file", "", "client key for mutual TLS, with the same placeholders as --cert-file")
	fs.BoolVar(&cfg.TLSInsecure, "tls-insecure", false, "skip TLS certificate verification")
	fs.StringVar(&cfg.APIURL, "api-url", cfg.APIURL, "Gale HTTP API (registry and Prometheus-compatible queries)")
	fs.StringVar(&o.tokenFile, "token-file", "data/admin.token", "file holding the API token (gale up writes DATA/admin.token)")
	fs.BoolVar(&cfg.Plain, "plain", false, "plain MQTT broker: anonymous logins, no registry, no end-to-end probes, no loss ledger")
	fs.StringVar(&cfg.ComparePlain, "compare-plain", "", "after the run, run the same profile (TLS settings included) against this plain MQTT broker (host:port) and report the ratios")
	fs.IntVar(&cfg.Devices, "devices", cfg.Devices, "devices, each its own connection (with --devices-file: the first N; default all)")
	fs.StringVar(&cfg.DevicesFile, "devices-file", "", "existing devices: CSV productKey,deviceKey,secret or a JSON array of devices")
	fs.StringVar(&cfg.DevicePrefix, "device-prefix", cfg.DevicePrefix, "device key prefix of created devices")
	fs.StringVar(&cfg.Product, "product", cfg.Product, "product of created devices (made with points P0.. and Seq if missing)")
	fs.StringVar(&cfg.Org, "org", cfg.Org, "org of created devices (made if missing)")
	fs.StringVar(&cfg.Site, "site", cfg.Site, "site of created devices (made if missing)")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", cfg.ConnectRate, "connections opened per second")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "timeout of one connect")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total messages per second in the steady phase (default: one per --interval per device)")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "publish interval of each device, when --rate is not set")
	fs.IntVar(&cfg.QoS, "qos", cfg.QoS, "MQTT QoS: 0 or 1")
	fs.IntVar(&cfg.Points, "points", cfg.Points, "measurepoints per message besides Seq")
	fs.StringVar(&cfg.Profile, "payload", cfg.Profile, "payload values: synthetic or turbine")
	fs.DurationVar(&cfg.RampUp, "ramp-up", 0, "linear ramp-up to the rate")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "steady phase (0 with --count: until every device sent its count)")
	fs.DurationVar(&cfg.RampDown, "ramp-down", 0, "linear ramp-down after the steady phase")
	fs.IntVar(&cfg.Count, "count", 0, "messages per device, then stop (0: no limit)")
	fs.DurationVar(&cfg.StartJitter, "start-jitter", 0, "random start offset per device in [0, D) (0: devices evenly staggered over one interval)")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "unacknowledged QoS 1 messages per connection")
	fs.DurationVar(&cfg.PublishTimeout, "publish-timeout", cfg.PublishTimeout, "how long a message may wait for its PUBACK")
	fs.BoolVar(&cfg.Replies, "replies", false, "subscribe to post replies and count error codes (rejected messages are not counted as lost)")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of start jitter and payload noise")
	fs.IntVar(&cfg.ProbeDevices, "probe-devices", cfg.ProbeDevices, "devices whose messages are end-to-end probes (0: none)")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", cfg.ProbeInterval, "how often the prober polls the query API")
	fs.BoolVar(&cfg.Ledger, "ledger", cfg.Ledger, "check after the run that every acknowledged sample is stored")
	fs.DurationVar(&cfg.SettleTimeout, "settle-timeout", cfg.SettleTimeout, "how long the loss check and the probes wait for missing samples without any of them showing up")
	fs.BoolVar(&cfg.Step.Enabled, "step-search", false, "search the maximum sustained rate: steps from --rate up by --step-factor until one fails")
	fs.Float64Var(&cfg.Step.Factor, "step-factor", cfg.Step.Factor, "rate factor between steps")
	fs.DurationVar(&cfg.Step.Duration, "step-duration", cfg.Step.Duration, "length of one step")
	fs.DurationVar(&cfg.Step.MaxP99, "step-max-p99", cfg.Step.MaxP99, "a step fails when its PUBACK p99 is above this")
	fs.Float64Var(&cfg.Step.MinRatio, "step-min-ratio", cfg.Step.MinRatio, "a step fails when it achieves less than this fraction of its offered rate")
	fs.IntVar(&cfg.Step.MaxSteps, "step-max", cfg.Step.MaxSteps, "most steps")
	fs.StringVar(&o.reportJSON, "report-json", "", "write the JSON report to this file")
	fs.StringVar(&o.reportHTML, "report-html", "", "write the HTML report (inline SVG plots) to this file")
	fs.StringVar(&o.reportTo, "report-to", "", "post the report to this node's runs page (the console's Runs); default: --api-url; off: do not")
	fs.StringVar(&o.slo, "slo", "", `fail (non-zero exit) unless the run meets this, e.g. 'p99_e2e<250ms,loss=0,errors=0,rate>=9500'`)
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return o, ErrUsage
	case err != nil:
		fmt.Fprintf(stderr, "gale loadgen: %v ('gale loadgen -h' lists the flags)\n", err)
		return o, ErrUsage
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "gale loadgen: unexpected argument %q\n", fs.Arg(0))
		return o, ErrUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.DevicesFile != "" && !set["devices"] {
		cfg.Devices = 0 // all of the file
	}
	if cfg.Count > 0 && !set["duration"] {
		cfg.Duration = 0
	}
	return o, nil
}

// write prints the report's summary to stdout and writes the report files asked for.
func (o options) write(rep *Report, stdout io.Writer) error {
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if o.reportJSON != "" {
		if err := rep.WriteJSON(o.reportJSON); err != nil {
			return err
		}
	}
	if o.reportHTML != "" {
		return rep.WriteHTML(o.reportHTML)
	}
	return nil
}

// verdict is the run's error for a non-zero exit: interrupted, or the SLO clauses it missed.
func verdict(rep *Report) error {
	if rep.Interrupted {
		return errors.New("interrupted")
	}
	if failed := rep.SLOFailures(); len(failed) > 0 {
		var parts []string
		for _, f := range failed {
			parts = append(parts, f.String())
		}
		return fmt.Errorf("%w: %s", ErrSLOFailed, strings.Join(parts, "; "))
	}
	return nil
}
