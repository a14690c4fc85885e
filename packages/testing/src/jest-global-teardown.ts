export default async function globalTeardown(): Promise<void> {
  await globalThis.__SWITCHYARD_REDIS__?.stop();
}
