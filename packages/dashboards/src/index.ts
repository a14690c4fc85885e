import { DASHBOARDS } from "./dashboards";

export { DASHBOARDS } from "./dashboards";

/** Each dashboard's file name and its JSON as Grafana provisions it (2-space indent, final newline). */
export function renderDashboards(): { file: string; text: string }[] {
  return DASHBOARDS.map(({ file, build }) => ({
    file,
    text: `${JSON.stringify(build().build(), null, 2)}\n`,
  }));
}
