import type { AddressPolicy } from "./address-policy";
import { allowedAddresses, BlockedTargetError, systemResolver, type Resolver } from "./guarded-agent";

export const MAX_URL_LENGTH = 2048;

/**
 * Checks a webhook URL when it is registered or submitted: http(s) only, no credentials in it,
 * and a host whose every address is allowed. Returns the reason it is refused, or undefined.
 * The same address check runs again at every delivery (see guardedAgent).
 */
export async function webhookUrlProblem(
  raw: string,
  policy: AddressPolicy,
  resolver: Resolver = systemResolver,
): Promise<string | undefined> {
  if (raw.length > MAX_URL_LENGTH) return `at most ${MAX_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "not a valid URL";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "only http and https URLs are allowed";
  if (url.username || url.password)
    return "credentials in the URL are not allowed; authenticate with the signature";
  try {
    await allowedAddresses(url.hostname, policy, resolver);
  } catch (err) {
    if (err instanceof BlockedTargetError)
      return `${err.message}; webhooks can only reach public addresses (operators: SWITCHYARD_WEBHOOK_ALLOWLIST)`;
    return (err as Error).message;
  }
  return undefined;
}
