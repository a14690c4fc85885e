import { Agent } from "undici";

/**
 * @google/genai dispatches through Node's global undici dispatcher, which jest's sandboxed
 * global does not carry: give the suite one, as a plain `node` process has, and close it after.
 */
export function useGlobalDispatcher(): void {
  const dispatcherSymbol = Symbol.for("undici.globalDispatcher.1");
  const g = globalThis as unknown as Record<symbol, unknown>;
  const agent = new Agent();
  beforeAll(() => {
    g[dispatcherSymbol] ??= agent;
  });
  afterAll(() => agent.close());
}
