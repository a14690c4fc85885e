import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderDashboards } from "./index";

/**
 * The provisioned dashboards are exactly what the definitions build (regenerate with
 * `pnpm --filter @switchyard/dashboards generate`), and every panel is a query of the
 * dashboard's Prometheus data source. test/e2e/prometheus.e2e.test.ts runs every query.
 */
const DIR = join(__dirname, "../../../infra/grafana/dashboards");

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string }[];
}

describe("Grafana dashboards", () => {
  const rendered = renderDashboards();

  it.each(rendered.map((d) => [d.file, d.text]))("%s matches its definition", (file, text) => {
    expect(readFileSync(join(DIR, file), "utf8")).toBe(text);
  });

  it.each(rendered.map((d) => [d.file, d.text]))(
    "%s: every panel queries the Prometheus data source",
    (_file, text) => {
      const d = JSON.parse(text) as {
        uid: string;
        panels: Panel[];
        templating: { list: { name: string }[] };
      };
      expect(d.uid).toMatch(/^switchyard-/);
      expect(d.templating.list.map((v) => v.name)).toContain("datasource");
      const panels = d.panels.filter((p) => p.type !== "row");
      expect(panels.length).toBeGreaterThan(5);
      const ids = d.panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of panels) {
        expect(p.title).toBeTruthy();
        expect(p.datasource).toEqual({ type: "prometheus", uid: "${datasource}" });
        expect(p.targets?.length).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.expr).toMatch(/switchyard_/);
          expect(t.refId).toMatch(/^[A-Z]$/);
        }
      }
    },
  );
});
