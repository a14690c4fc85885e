import { parseEnv, portSchema, logLevelSchema } from "@switchyard/core";
import { createLogger } from "@switchyard/observability";
import { z } from "zod";
import { parseMockLimits } from "./limits";
import { MockProvider } from "./server";

const env = parseEnv(
  z.object({
    PORT: portSchema(4010),
    HOST: z.string().default("127.0.0.1"),
    LOG_LEVEL: logLevelSchema,
    MOCK_LATENCY_MS: z.coerce.number().int().min(0).max(600_000).default(0),
    MOCK_ERROR_RATE: z.coerce.number().min(0).max(1).default(0),
    MOCK_LIMITS: z.string().optional(),
    /** Streamed answers wait this long between their pieces. */
    MOCK_STREAM_CHUNK_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  }),
);
const log = createLogger("mock-provider", env.LOG_LEVEL);
let limits;
try {
  limits = parseMockLimits(env.MOCK_LIMITS);
} catch (err) {
  log.fatal((err as Error).message);
  process.exit(1);
}
const mock = new MockProvider({
  limits,
  latencyMs: env.MOCK_LATENCY_MS,
  errorRate: env.MOCK_ERROR_RATE,
  chunkDelayMs: env.MOCK_STREAM_CHUNK_MS,
  maxBodyBytes: 16 * 1024 * 1024,
});

mock
  .listen(env.PORT, env.HOST)
  .then((port) =>
    log.info(
      { port, latencyMs: env.MOCK_LATENCY_MS, errorRate: env.MOCK_ERROR_RATE, limitedKeys: limits.size },
      "mock provider listening",
    ),
  )
  .catch((err: Error) => {
    log.fatal({ err }, `cannot listen on ${env.HOST}:${env.PORT}; set PORT to a free port`);
    process.exit(1);
  });

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.once(sig, () => {
    void mock.close().then(() => process.exit(0));
  });
}
