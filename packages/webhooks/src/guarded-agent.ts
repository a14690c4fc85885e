import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { isIP } from "node:net";
import { Agent, buildConnector } from "undici";
import { stripBrackets, type AddressPolicy } from "./address-policy";

/** A delivery refused because its target resolves to an address webhooks must not reach. */
export class BlockedTargetError extends Error {
  readonly code = "WEBHOOK_TARGET_BLOCKED";
  constructor(message: string) {
    super(message);
    this.name = "BlockedTargetError";
  }
}

/** Resolves a host name to all its addresses (injectable for tests of DNS rebinding). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))),
  );

/**
 * The addresses a host may be reached at: all of its addresses when every one is allowed,
 * otherwise a BlockedTargetError (one internal address among public ones is enough to refuse).
 */
export async function allowedAddresses(
  hostname: string,
  policy: AddressPolicy,
  resolver: Resolver = systemResolver,
): Promise<LookupAddress[]> {
  const host = stripBrackets(hostname);
  const family = isIP(host);
  if (family) {
    const reason = policy.blockedReason(host);
    if (reason) throw new BlockedTargetError(`webhook target blocked: ${reason}`);
    return [{ address: host, family }];
  }
  let addrs: LookupAddress[];
  try {
    addrs = await resolver(host);
  } catch (err) {
    throw new Error(`cannot resolve ${host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      cause: err,
    });
  }
  if (addrs.length === 0) throw new Error(`cannot resolve ${host}: no addresses`);
  if (policy.allowsHost(host)) return addrs;
  for (const a of addrs) {
    const reason = policy.blockedReason(a.address);
    if (reason) throw new BlockedTargetError(`webhook target blocked: ${host} resolves to ${reason}`);
  }
  return addrs;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * An undici Agent whose connections can only reach allowed addresses. The check happens at
 * connect time inside the socket's own DNS lookup, and the socket connects to exactly the
 * addresses that were checked, so a host that resolves differently a moment later (DNS
 * rebinding) cannot slip through. IP literals, which skip the lookup, are checked before
 * connecting. Redirects are never followed (undici's request() does not follow them).
 */
export function guardedAgent(
  policy: AddressPolicy,
  opts: { connectTimeoutMs: number; resolver?: Resolver },
): Agent {
  const resolver = opts.resolver ?? systemResolver;
  const lookup = (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    allowedAddresses(hostname, policy, resolver).then(
      (addrs) => {
        const first = addrs[0] as LookupAddress;
        if (options.all) callback(null, addrs);
        else callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ""),
    );
  };
  const connect = buildConnector({ timeout: opts.connectTimeoutMs, lookup } as buildConnector.BuildOptions);
  return new Agent({
    connect: (options, callback) => {
      const host = stripBrackets(options.hostname);
      if (isIP(host)) {
        const reason = policy.blockedReason(host);
        if (reason) {
          callback(new BlockedTargetError(`webhook target blocked: ${reason}`), null);
          return;
        }
      }
      connect(options, callback);
    },
  });
}
