import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  QueryVariableBuilder,
  RowBuilder,
  VariableHide,
  VariableRefresh,
} from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";
import {
  BigValueGraphMode,
  LegendDisplayMode,
  LegendPlacement,
  ReduceDataOptionsBuilder,
  SortOrder,
  TooltipDisplayMode,
  VizLegendOptionsBuilder,
  VizTooltipOptionsBuilder,
} from "@grafana/grafana-foundation-sdk/common";

/** The small vocabulary the dashboards are written in: one query per series, units, layout. */

/** Every panel reads the data source the dashboard's `datasource` variable picks. */
export const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

export interface Query {
  expr: string;
  /** Grafana legend template, e.g. "{{tenant}}". */
  legend: string;
}

export const q = (expr: string, legend: string): Query => ({ expr, legend });

let nextId = 1;

/** A line chart of one or more queries. `width` is in Grafana's 24-column grid. */
export function chart(
  title: string,
  description: string,
  unit: string,
  queries: Query[],
  width = 12,
): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder()
    .id(nextId++)
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .span(width)
    .height(8)
    .fillOpacity(10)
    .legend(
      new VizLegendOptionsBuilder()
        .displayMode(LegendDisplayMode.List)
        .placement(LegendPlacement.Bottom)
        .showLegend(true)
        .calcs([]),
    )
    .tooltip(new VizTooltipOptionsBuilder().mode(TooltipDisplayMode.Multi).sort(SortOrder.Descending));
  for (const [i, x] of queries.entries())
    panel.withTarget(
      new DataqueryBuilder()
        .expr(x.expr)
        .legendFormat(x.legend)
        .refId(String.fromCharCode(65 + i)),
    );
  return panel;
}

/** A single number (the last value) of one query. */
export function single(
  title: string,
  description: string,
  unit: string,
  query: Query,
  width = 6,
): stat.PanelBuilder {
  return new stat.PanelBuilder()
    .id(nextId++)
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .span(width)
    .height(5)
    .graphMode(BigValueGraphMode.Area)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(["lastNotNull"]).fields("").values(false))
    .withTarget(new DataqueryBuilder().expr(query.expr).legendFormat(query.legend).refId("A"));
}

export const row = (title: string): RowBuilder => new RowBuilder(title).id(nextId++);

/** A dashboard with the Prometheus data source picker and the given label filters (multi, with All). */
export function dashboard(
  uid: string,
  title: string,
  description: string,
  filters: { name: string; label: string; query: string }[],
): DashboardBuilder {
  nextId = 1;
  const d = new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags(["switchyard"])
    .refresh("30s")
    .time({ from: "now-1h", to: "now" })
    .timezone("browser")
    .withVariable(new DatasourceVariableBuilder("datasource").label("Data source").type("prometheus"));
  for (const f of filters)
    d.withVariable(
      new QueryVariableBuilder(f.name)
        .label(f.label)
        .datasource(DATASOURCE)
        .query(f.query)
        .definition(f.query)
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .multi(true)
        .includeAll(true)
        .allValue(".*")
        .current({ text: "All", value: "$__all" })
        .hide(VariableHide.DontHide),
    );
  return d;
}

/** p50, p95 and p99 of a histogram's rate, summed over what `by` does not name. */
export function quantiles(bucket: string, selector: string, by: string[] = [], legendPrefix = ""): Query[] {
  const labels = ["le", ...by].join(", ");
  const legend = by.map((b) => `{{${b}}} `).join("");
  return [0.5, 0.95, 0.99].map((p) =>
    q(
      `histogram_quantile(${p}, sum by (${labels}) (rate(${bucket}${selector}[$__rate_interval])))`,
      `${legendPrefix}${legend}p${Math.round(p * 100)}`,
    ),
  );
}
