import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { renderDashboards } from "./index";

/** Writes infra/grafana/dashboards/*.json from the definitions (run after changing them). */
const out = resolve(__dirname, "../../../infra/grafana/dashboards");
for (const { file, text } of renderDashboards()) {
  writeFileSync(join(out, file), text);
  process.stdout.write(`wrote ${join(out, file)}\n`);
}
