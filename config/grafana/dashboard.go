// Package grafana builds fhirwall's Grafana dashboard with the Grafana Foundation SDK, so the checked-in
// JSON (fhirwall-dashboard.json) is schema-valid by construction; cmd config/grafana/gen writes it.
package grafana

//go:generate sh -c "go run ./gen > fhirwall-dashboard.json"

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/fhirwall/fhirwall/config"
)

// UID is the dashboard's stable id, so a re-import replaces it.
const UID = "fhirwall-proxy"

var ds = dashboard.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// JSON returns the dashboard as Grafana imports it, indented, with a trailing newline.
func JSON() ([]byte, error) {
	d, err := Dashboard().Build()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Dashboard is a top row for what all APIs share (audit sink, circuit breakers), then one row per API.
func Dashboard() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("fhirwall").
		Uid(UID).
		Description("fhirwall-proxy per API: requests, decisions, latency, upstream errors, rate limits; Envoy's per-route stats beside them.").
		Tags([]string{"fhirwall", "fhir", "envoy"}).
		Refresh("30s").
		Time("now-1h", "now").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))

	id := &ids{}
	b = b.WithRow(dashboard.NewRowBuilder("Audit spool and circuit breakers").Id(id.next())).
		WithPanel(series(id, "Audit records in flight", "short", "Records being written to the audit sink and not yet acknowledged; requests wait on them.",
			query(`sum by (api) (fhirwall_audit_writes_in_flight)`, "{{api}}"))).
		WithPanel(series(id, "Audit write failures", "ops", "Each failure answered its request 503.",
			query(`sum by (api) (rate(fhirwall_audit_write_failures_total[$__rate_interval]))`, "{{api}}"))).
		WithPanel(series(id, "Audit spool: not yet in Kafka", "short", "Entries fsync'd in the spool that Kafka has not acknowledged; grows while Kafka is down.",
			query(`sum(fhirwall_audit_spool_unshipped_entries{})`, "unshipped"))).
		WithPanel(series(id, "Audit spool: disk budget used", "percentunit", "At 100% requests are refused (503) until Kafka catches up.",
			query(`sum(fhirwall_audit_spool_bytes{}) / sum(fhirwall_audit_spool_budget_bytes{})`, "used"))).
		WithPanel(series(id, "Audit shipping", "ops", "Entries acknowledged by Kafka, and failed batch writes (retried).",
			query(`sum(rate(fhirwall_audit_shipped_total{}[$__rate_interval]))`, "shipped"),
			query(`sum(rate(fhirwall_audit_ship_failures_total{}[$__rate_interval]))`, "failed batches"))).
		WithPanel(breakers(id))
	for _, api := range config.KnownAPIs {
		b = apiRow(b, id, api)
	}
	return priorAuthRow(b, id)
}

// priorAuthRow: the Prior Authorization workflow against its CMS-0057-F timeframes (72 h expedited, 7 days
// standard): what is decided how, how long decisions take, and what waits for a reviewer.
func priorAuthRow(b *dashboard.DashboardBuilder, id *ids) *dashboard.DashboardBuilder {
	return b.WithRow(dashboard.NewRowBuilder("prior-auth: decisions and review queue").Id(id.next())).
		WithPanel(series(id, "Decisions by status", "ops", "Requests answered: approved, denied, partial, pended (for a reviewer), error (business errors); a pended request decided later counts again.",
			query(`sum by (status, expedited) (rate(fhirwall_prior_auth_decisions_total{}[$__rate_interval]))`, "{{status}} expedited={{expedited}}"))).
		WithPanel(series(id, "Time to decision (p50, p99)", "s", "From receipt to decision; CMS-0057-F: 72 h expedited, 7 days standard.",
			query(`histogram_quantile(0.5, sum by (le, expedited) (rate(fhirwall_prior_auth_decision_seconds_bucket{}[$__rate_interval])))`, "p50 expedited={{expedited}}"),
			query(`histogram_quantile(0.99, sum by (le, expedited) (rate(fhirwall_prior_auth_decision_seconds_bucket{}[$__rate_interval])))`, "p99 expedited={{expedited}}"))).
		WithPanel(series(id, "Review queue", "short", "Pended requests, and those past their CMS deadline (should stay at 0).",
			query(`sum(fhirwall_prior_auth_pended{})`, "pended"),
			query(`sum(fhirwall_prior_auth_past_deadline{})`, "past deadline"))).
		WithPanel(series(id, "Oldest pended request", "s", "Age of the oldest request waiting for a reviewer.",
			query(`max(fhirwall_prior_auth_oldest_pended_seconds{})`, "oldest")))
}

// ids numbers the panels: Grafana keys panel state (links, edits) by id.
type ids struct{ n uint32 }

func (i *ids) next() uint32 { i.n++; return i.n }

func apiRow(b *dashboard.DashboardBuilder, id *ids, api string) *dashboard.DashboardBuilder {
	sel := fmt.Sprintf(`api=%q`, api)
	return b.WithRow(dashboard.NewRowBuilder(api).Id(id.next())).
		WithPanel(series(id, "Requests by status", "reqps", "What clients got, by status and mode (envoy, standalone).",
			query(`sum by (code, mode) (rate(fhirwall_requests_total{`+sel+`}[$__rate_interval]))`, "{{code}} {{mode}}"))).
		WithPanel(series(id, "Decisions by outcome and reason", "ops", "",
			query(`sum by (outcome, reason) (rate(fhirwall_decisions_total{`+sel+`}[$__rate_interval]))`, "{{outcome}} {{reason}}"))).
		WithPanel(series(id, "Latency", "s", "Decision p50/p99 (both modes); whole request p99 (standalone).",
			query(`histogram_quantile(0.5, sum by (le) (rate(fhirwall_decision_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "decision p50"),
			query(`histogram_quantile(0.99, sum by (le) (rate(fhirwall_decision_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "decision p99"),
			query(`histogram_quantile(0.99, sum by (le) (rate(fhirwall_request_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "request p99 (standalone)"))).
		WithPanel(series(id, "FHIR server errors", "ops", "Failed calls to the FHIR server: adapters while deciding, and proxied requests (standalone).",
			query(`sum by (kind, mode) (rate(fhirwall_upstream_errors_total{`+sel+`}[$__rate_interval]))`, "{{kind}} {{mode}}"))).
		WithPanel(series(id, "Rate limited", "reqps", "Refused 429 by the standalone limiter, and by Envoy's local rate limit on the API's route.",
			query(`sum(rate(fhirwall_rate_limited_total{`+sel+`}[$__rate_interval]))`, "standalone"),
			query(fmt.Sprintf(`sum(rate(envoy_http_local_rate_limit_rate_limited{envoy_local_http_ratelimit_prefix=%q}[$__rate_interval]))`, api), "envoy"))).
		WithPanel(series(id, "Envoy route: upstream answers by class", "reqps", "Envoy's stats of the API's route (stat_prefix = API name) and its FHIR server cluster.",
			query(fmt.Sprintf(`sum by (envoy_response_code_class) (rate(envoy_vhost_route_upstream_rq_xx{envoy_route=%q}[$__rate_interval]))`, api), "route {{envoy_response_code_class}}xx"),
			query(fmt.Sprintf(`sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=%q}[$__rate_interval]))`, "fhir_server_"+api), "cluster total"))).
		WithPanel(series(id, "Envoy route: upstream latency", "ms", "",
			query(fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(envoy_vhost_route_upstream_rq_time_bucket{envoy_route=%q}[$__rate_interval])))`, api), "route p99"),
			query(fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=%q}[$__rate_interval])))`, "fhir_server_"+api), "cluster p99")))
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend).Datasource(ds)
}

func series(id *ids, title, unit, description string, qs ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Id(id.next()).Title(title).Unit(unit).Datasource(ds).Height(8).Span(8).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(true))
	if description != "" {
		p = p.Description(description)
	}
	for i, q := range qs {
		p = p.WithTarget(q.RefId(string(rune('A' + i))))
	}
	return p
}

// breakers shows each circuit breaker's state by name: 0 closed, 1 half-open, 2 open.
func breakers(id *ids) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Id(id.next()).Title("Circuit breakers").Datasource(ds).Height(8).Span(8).
		Description("fhir-server (compartment checks), attribution and consent (Provider Access facts).").
		WithTarget(query(`max by (breaker) (fhirwall_circuit_breaker_state)`, "{{breaker}}").RefId("A")).
		Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{
			"0": {Text: cog.ToPtr("closed"), Color: cog.ToPtr("green")},
			"1": {Text: cog.ToPtr("half-open"), Color: cog.ToPtr("yellow")},
			"2": {Text: cog.ToPtr("open"), Color: cog.ToPtr("red")},
		}}}}).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone)
}
