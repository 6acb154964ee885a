package dashboards

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/apiclient"
)

// ErrUsage is returned by Main for command-line errors already explained on stderr.
var ErrUsage = errors.New("usage")

// ErrProblems is wrapped by Main's error when lint or check found problems.
var ErrProblems = errors.New("dashboard problems")

const usage = `usage: gale dashboards COMMAND [flags]

commands:
  push    create or update the Gale data source, folder and dashboards in Grafana
  export  write the dashboards and Grafana file provisioning into DIR
  lint    check dashboards (default: the shipped ones) without a live Gale
  check   run every panel query against a live Gale; fail on panels without data

Run 'gale dashboards COMMAND -h' for a command's flags.
`

// Main is `gale dashboards`: push, export, lint and check. Results go to
// stdout, usage to stderr; the error is for a non-zero exit.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"push": push, "export": export, "lint": lint, "check": check,
	}
	run, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gale dashboards: unknown command %q\n\n%s", args[0], usage)
		return ErrUsage
	}
	return run(ctx, args[1:], stdout, stderr)
}

func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gale dashboards "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args and allows at most maxArgs positional arguments (-1: any).
func parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		return ErrUsage
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(maxArgs))
		return ErrUsage
	}
	return nil
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read Gale token: %w (gale up writes it to DATA/admin.token)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func push(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("push", stderr)
	grafanaURL := fs.String("grafana-url", "", "Grafana's URL, e.g. http://127.0.0.1:3000 (required)")
	token := fs.String("token", os.Getenv("GRAFANA_TOKEN"), "Grafana service account token (default $GRAFANA_TOKEN)")
	galeURL := fs.String("gale-url", "http://127.0.0.1:8080", "Gale's HTTP API as Grafana reaches it")
	galeTokenFile := fs.String("gale-token-file", "data/admin.token", "file with the Gale API token the data source sends")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Grafana request")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *grafanaURL == "" {
		fmt.Fprintln(stderr, "gale dashboards push: --grafana-url is required")
		return ErrUsage
	}
	galeToken, err := readToken(*galeTokenFile)
	if err != nil {
		return err
	}
	ds, err := Shipped()
	if err != nil {
		return err
	}
	res, err := Push(ctx, PushConfig{GrafanaURL: *grafanaURL, Token: *token, Timeout: *timeout,
		Datasource: Datasource{GaleURL: *galeURL, Token: galeToken}}, ds)
	if err != nil {
		return err
	}
	verb := func(created bool) string {
		if created {
			return "created"
		}
		return "updated"
	}
	fmt.Fprintf(stdout, "folder %q %s, data source %q (%s/prometheus) %s, %d dashboards saved:\n",
		FolderTitle, verb(res.FolderCreated), DatasourceUID, strings.TrimSuffix(*galeURL, "/"), verb(res.DatasourceCreated), len(res.Dashboards))
	for _, u := range res.Dashboards {
		fmt.Fprintf(stdout, "  %s%s\n", strings.TrimSuffix(*grafanaURL, "/"), u)
	}
	return nil
}

func export(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("export", stderr)
	galeURL := fs.String("gale-url", "http://127.0.0.1:8080", "Gale's HTTP API as Grafana reaches it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gale dashboards export [--gale-url URL] DIR")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ErrUsage
	}
	ds, err := Shipped()
	if err != nil {
		return err
	}
	files, err := Export(fs.Arg(0), ds, *galeURL)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	fmt.Fprintf(stdout, "Grafana reads the data source token from $%s.\n", TokenEnv)
	return nil
}

// load returns the dashboard files given, or the shipped dashboards.
func load(files []string) ([]*Dashboard, error) {
	if len(files) == 0 {
		return Shipped()
	}
	return readAll(files, os.ReadFile)
}

func report(stdout io.Writer, ds []*Dashboard, problems []Problem) error {
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %d in %d dashboards", ErrProblems, len(problems), len(ds))
	}
	fmt.Fprintf(stdout, "%d dashboards OK\n", len(ds))
	return nil
}

func lint(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("lint", stderr)
	if err := parse(fs, args, -1); err != nil {
		return err
	}
	ds, err := load(fs.Args())
	if err != nil {
		return err
	}
	known, err := KnownMetrics()
	if err != nil {
		return err
	}
	var problems []Problem
	for _, d := range ds {
		problems = append(problems, Lint(d, known)...)
	}
	return report(stdout, ds, problems)
}

// varFlags collects --var name=value.
type varFlags map[string]string

func (v varFlags) String() string { return "" }

func (v varFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return errors.New("want name=value")
	}
	v[name] = value
	return nil
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("check", stderr)
	galeURL := fs.String("url", "http://127.0.0.1:8080", "Gale's HTTP API")
	tokenFile := fs.String("token-file", "data/admin.token", "file with the Gale API token")
	span := fs.Duration("range", 15*time.Minute, "time range the range queries cover, ending now")
	vars := varFlags{}
	fs.Var(vars, "var", "fix a template variable, name=value (repeatable); the others take all or their first value")
	if err := parse(fs, args, -1); err != nil {
		return err
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	ds, err := load(fs.Args())
	if err != nil {
		return err
	}
	api, err := NewAPI(strings.TrimSuffix(*galeURL, "/")+"/prometheus", apiclient.Options{Token: token, Timeout: time.Minute})
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if _, err := api.Query(ctx, "1+1", time.Now()); err != nil {
		return fmt.Errorf("cannot query Gale at %s: %w", *galeURL, err)
	}
	var problems []Problem
	for _, d := range ds {
		ps, err := Check(ctx, api, d, CheckOptions{Range: *span, Vars: vars})
		if err != nil {
			return err
		}
		problems = append(problems, ps...)
	}
	return report(stdout, ds, problems)
}
