// Bundles one app (run from its folder) into dist/main.js with esbuild.
// Internal @switchyard/* packages are consumed from source and bundled in; third-party
// packages stay external and load from node_modules. Lua files are inlined as text.
import { build } from "esbuild";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const pkg = JSON.parse(readFileSync(join(process.cwd(), "package.json"), "utf8"));
const external = Object.keys(pkg.dependencies ?? {}).filter((name) => !name.startsWith("@switchyard/"));
const entries = pkg.switchyard?.entries ?? ["main"];
rmSync("dist", { recursive: true, force: true });
await build({
  entryPoints: Object.fromEntries(entries.map((e) => [e, `src/${e}.ts`])),
  outdir: "dist",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  sourcemap: true,
  external,
  loader: { ".lua": "text" },
  logLevel: "warning",
});
console.log(`built ${pkg.name}: ${entries.map((e) => `dist/${e}.js`).join(", ")}`);
