import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * Which addresses webhooks may reach. Only public unicast addresses are allowed: loopback,
 * private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, the cloud metadata service),
 * CGNAT (100.64/10), unique-local (fc00::/7), unspecified, multicast and reserved addresses are
 * refused, and so is every IPv6 form that embeds an IPv4 address or is deprecated, whatever the
 * address inside: IPv4-compatible ::a.b.c.d (::/96), IPv4-mapped and -translated
 * (::ffff:0:0/96, ::ffff:0:0:0/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16),
 * Teredo (2001::/32), discard (100::/64) and site-local (fec0::/10): a stack may route them to
 * the IPv4 address inside. SWITCHYARD_WEBHOOK_ALLOWLIST names hosts or CIDRs that are allowed
 * anyway (development, tests, a receiver on the same network on purpose); an allowlisted IPv4
 * address also allows its ::ffff: form.
 */
export class AddressPolicy {
  private readonly hosts = new Set<string>();
  private readonly cidrs: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];

  constructor(allowlist: readonly string[] = []) {
    for (const raw of allowlist) {
      const entry = raw.trim().toLowerCase();
      if (!entry) continue;
      if (entry.includes("/")) {
        try {
          const [addr, bits] = ipaddr.parseCIDR(entry);
          this.cidrs.push([normalise(addr), bits]);
        } catch {
          throw new Error(`SWITCHYARD_WEBHOOK_ALLOWLIST: '${raw}' is not a valid CIDR (e.g. 10.0.0.0/8)`);
        }
      } else if (isIP(stripBrackets(entry))) {
        const addr = normalise(ipaddr.parse(stripBrackets(entry)));
        this.cidrs.push([addr, addr.kind() === "ipv4" ? 32 : 128]);
      } else this.hosts.add(entry);
    }
  }

  static fromEnv(value: string | undefined): AddressPolicy {
    return new AddressPolicy((value ?? "").split(","));
  }

  /** True when the host name itself is on the allowlist (its addresses are then not checked). */
  allowsHost(hostname: string): boolean {
    return this.hosts.has(stripBrackets(hostname).toLowerCase());
  }

  /** Why an address must not be reached, or undefined when it may be. */
  blockedReason(address: string): string | undefined {
    let raw: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      raw = parseAddress(stripBrackets(address));
    } catch {
      return `'${address}' is not an IP address`;
    }
    const addr = normalise(raw);
    for (const [net, bits] of this.cidrs) {
      if (net.kind() === addr.kind() && addr.match(net, bits)) return undefined;
    }
    const form = refusedV6(raw);
    if (form) return `${raw.toString()} is an ${form} IPv6 address (it embeds or stands for another address)`;
    const range = addr.range();
    return range === "unicast" ? undefined : `${addr.toString()} is a ${range} address`;
  }
}

/** IPv6 prefixes refused outright, named for the error message. */
const REFUSED_V6: readonly [string, ipaddr.IPv6, number][] = (
  [
    ["IPv4-compatible (deprecated)", "::", 96],
    ["IPv4-mapped", "::ffff:0:0", 96],
    ["IPv4-translated", "::ffff:0:0:0", 96],
    ["NAT64", "64:ff9b::", 96],
    ["local-use NAT64", "64:ff9b:1::", 48],
    ["6to4", "2002::", 16],
    ["Teredo", "2001::", 32],
    ["discard-only", "100::", 64],
    ["site-local (deprecated)", "fec0::", 10],
  ] as const
).map(([name, net, bits]) => [name, ipaddr.IPv6.parse(net), bits]);

function refusedV6(addr: ipaddr.IPv4 | ipaddr.IPv6): string | undefined {
  if (addr.kind() !== "ipv6") return undefined;
  const v6 = addr as ipaddr.IPv6;
  // :: and ::1 keep their own names (unspecified, loopback).
  if (v6.range() === "unspecified" || v6.range() === "loopback") return undefined;
  for (const [name, net, bits] of REFUSED_V6) if (v6.match(net, bits)) return name;
  return undefined;
}

const V4_COMPATIBLE_TEXT = /^::(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/**
 * ipaddr.js reads the text form "::a.b.c.d" as if it were "::ffff:a.b.c.d"; it is the
 * IPv4-compatible ::/96 form (as "::7f00:1", which a URL parser makes of it, shows).
 */
function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const compat = V4_COMPATIBLE_TEXT.exec(text);
  if (compat?.[1]) {
    const b = ipaddr.IPv4.parse(compat[1]).toByteArray();
    return new ipaddr.IPv6([
      0,
      0,
      0,
      0,
      0,
      0,
      ((b[0] ?? 0) << 8) | (b[1] ?? 0),
      ((b[2] ?? 0) << 8) | (b[3] ?? 0),
    ]);
  }
  return ipaddr.parse(text);
}

/** "[::1]" (a URL's IPv6 host) becomes "::1". */
export const stripBrackets = (host: string): string => host.replace(/^\[(.*)\]$/, "$1");

/** ::ffff:a.b.c.d becomes a.b.c.d, so an IPv4 rule or range applies to it. */
function normalise(addr: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  if (addr.kind() === "ipv6") {
    const v6 = addr as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
  }
  return addr;
}
