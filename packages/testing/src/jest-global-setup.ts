import { startRedis, type RedisHandle } from "./redis";

declare global {
  var __SWITCHYARD_REDIS__: RedisHandle | undefined;
}

/** Starts one redis-server for the whole jest run unless REDIS_URL points at one. */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) {
    process.env.SWITCHYARD_TEST_REDIS_URL = process.env.REDIS_URL;
    return;
  }
  const redis = await startRedis();
  globalThis.__SWITCHYARD_REDIS__ = redis;
  process.env.SWITCHYARD_TEST_REDIS_URL = redis.url;
  console.log(`\ntest redis-server on ${redis.url}`);
}
