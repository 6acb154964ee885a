package dashboards

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
)

// Metric types of ExportedMetrics.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
	Summary   = "summary"
)

// Scrape jobs of the shipped Prometheus config (dashboards/prometheus/gale-scrape.yml).
const (
	JobNode = "gale"
	JobEdge = "gale-edge"
)

// Metric is a metric a Gale process exports on /metrics.
type Metric struct {
	Name string
	Type string
	// Job is the process that exports it: JobNode or JobEdge.
	Job string
}

// ExportedMetrics lists what Gale's processes export on /metrics that the
// dashboards may query: every gale_ metric of a cloud node and of the edge,
// and the Prometheus TSDB, rule, Go and process metrics the dashboards use.
// It is kept by hand; TestLiveNode checks the node's part against a running
// node in both directions for gale_ names, and the edge's against its source.
func ExportedMetrics() []Metric {
	node := []Metric{
		{"gale_broker_messages_total", Counter, JobNode},
		{"gale_broker_samples_total", Counter, JobNode},
		{"gale_broker_rejected_messages_total", Counter, JobNode},
		{"gale_broker_rejected_connects_total", Counter, JobNode},
		{"gale_broker_connects_total", Counter, JobNode},
		{"gale_broker_sessions", Gauge, JobNode},
		{"gale_broker_connections", Gauge, JobNode},
		{"gale_broker_puback_seconds", Histogram, JobNode},
		{"gale_ingest_samples_total", Counter, JobNode},
		{"gale_ingest_rejected_samples_total", Counter, JobNode},
		{"gale_ingest_records_total", Counter, JobNode},
		{"gale_ingest_commit_seconds", Histogram, JobNode},
		{"gale_ingest_e2e_seconds", Histogram, JobNode},
		{"gale_kafka_consumer_lag", Gauge, JobNode},
		{"gale_kafka_ingest_writes_total", Counter, JobNode},
		{"gale_kafka_ingest_messages_total", Counter, JobNode},
		{"gale_registry_changes_rejected_total", Counter, JobNode},
		{"gale_device_events_skipped_total", Counter, JobNode},
		{"gale_remote_write_samples_total", Counter, JobNode},
		{"gale_remote_write_requests_total", Counter, JobNode},
		{"gale_remote_write_retries_total", Counter, JobNode},
		{"gale_remote_write_send_duration_seconds", Histogram, JobNode},
		{"gale_rules_samples_total", Counter, JobNode},
		{"gale_rules_late_samples_total", Counter, JobNode},
		{"gale_rules_eval_seconds", Histogram, JobNode},
		{"gale_rules_loaded", Gauge, JobNode},
		{"gale_alert_transitions_total", Counter, JobNode},
		{"gale_commands_sent_total", Counter, JobNode},
		{"gale_commands_completed_total", Counter, JobNode},
		{"gale_commands_expired_total", Counter, JobNode},
		{"gale_command_roundtrip_seconds", Histogram, JobNode},
		{"gale_http_requests_total", Counter, JobNode},
		{"gale_http_panics_total", Counter, JobNode},
		{"gale_http_login_failures_total", Counter, JobNode},
		{"gale_query_refused_total", Counter, JobNode},
		{"gale_rule_files_refused", Gauge, JobNode},
		{"gale_promql_rule_panics_total", Counter, JobNode},
		{"prometheus_tsdb_head_series", Gauge, JobNode},
		{"prometheus_tsdb_head_samples_appended_total", Counter, JobNode},
		{"prometheus_tsdb_head_chunks", Gauge, JobNode},
		{"prometheus_tsdb_out_of_order_samples_total", Counter, JobNode},
		{"prometheus_tsdb_compactions_total", Counter, JobNode},
		{"prometheus_engine_query_duration_seconds", Summary, JobNode},
		{"prometheus_rule_group_last_duration_seconds", Gauge, JobNode},
		{"prometheus_rule_evaluation_failures_total", Counter, JobNode},
		{"process_cpu_seconds_total", Counter, JobNode},
		{"process_resident_memory_bytes", Gauge, JobNode},
		{"go_goroutines", Gauge, JobNode},
		{"go_memstats_heap_inuse_bytes", Gauge, JobNode},
		{"go_gc_duration_seconds", Summary, JobNode},
	}
	edge := []Metric{
		{"gale_edge_polls_total", Counter, JobEdge},
		{"gale_edge_poll_duration_seconds", Histogram, JobEdge},
		{"gale_edge_poll_errors_total", Counter, JobEdge},
		{"gale_edge_samples_total", Counter, JobEdge},
		{"gale_edge_published_samples_total", Counter, JobEdge},
		{"gale_edge_rejected_samples_total", Counter, JobEdge},
		{"gale_edge_queue_dropped_total", Counter, JobEdge},
		{"gale_edge_queue_depth", Gauge, JobEdge},
		{"gale_edge_queue_bytes", Gauge, JobEdge},
		{"gale_edge_active", Gauge, JobEdge},
		{"gale_edge_uplink_connected", Gauge, JobEdge},
		{"gale_edge_uplink_connects_total", Counter, JobEdge},
		{"gale_edge_subdevice_login_failures_total", Counter, JobEdge},
		{"gale_edge_service_calls_total", Counter, JobEdge},
	}
	return append(node, edge...)
}

// SeriesNames returns the series names a metric appears as in PromQL:
// histograms as _bucket, _sum and _count, summaries also as _sum and _count.
func (m Metric) SeriesNames() []string {
	switch m.Type {
	case Histogram:
		return []string{m.Name + "_bucket", m.Name + "_sum", m.Name + "_count"}
	case Summary:
		return []string{m.Name, m.Name + "_sum", m.Name + "_count"}
	}
	return []string{m.Name}
}

// KnownMetrics returns every series name a query against Gale may use: the
// measurepoints of the shipped thing models (with their _quality series),
// the shipped recording rules, the rule manager's ALERTS series, the
// scrape's up, and ExportedMetrics.
func KnownMetrics() (map[string]bool, error) {
	known := map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}
	products, err := registry.ShippedProducts()
	if err != nil {
		return nil, fmt.Errorf("shipped thing models: %w", err)
	}
	for _, p := range products {
		for _, mp := range p.Model.Measurepoints {
			known[api.MetricName(mp.ID)] = true
			if mp.Quality {
				known[api.MetricName(mp.ID)+ingest.QualitySuffix] = true
			}
		}
	}
	recorded, err := shippedRecordingRules()
	if err != nil {
		return nil, err
	}
	for _, r := range recorded {
		known[r] = true
	}
	for _, m := range ExportedMetrics() {
		for _, n := range m.SeriesNames() {
			known[n] = true
		}
	}
	return known, nil
}

// shippedRecordingRules returns the names the shipped PromQL rules record,
// read from the files rules.InstallShipped writes.
func shippedRecordingRules() ([]string, error) {
	dir, err := os.MkdirTemp("", "gale-rules-")
	if err != nil {
		return nil, fmt.Errorf("read shipped rules: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := rules.InstallShipped(dir); err != nil {
		return nil, fmt.Errorf("read shipped rules: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, rules.PromQLDir, "*.y*ml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read shipped rules: %w", err)
		}
		var rf struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("shipped rule file %s: %w", filepath.Base(f), err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					out = append(out, r.Record)
				}
			}
		}
	}
	return out, nil
}
