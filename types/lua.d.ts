// Lua scripts are imported as text: esbuild's text loader in builds, a jest transform in tests.
declare module "*.lua" {
  const source: string;
  export default source;
}
