import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * Which addresses webhooks may reach. Only public unicast addresses are allowed: loopback,
 * private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, the cloud metadata service),
 * CGNAT (100.64/10), unique-local (fc00::/7), unspecified, multicast, reserved and the IPv6 forms
 * that embed an IPv4 address (::ffff:a.b.c.d, 6to4, NAT64, Teredo) are refused; an embedded IPv4
 * address is judged as itself. SWITCHYARD_WEBHOOK_ALLOWLIST names hosts or CIDRs that are allowed
 * anyway (development, tests, a receiver on the same network on purpose).
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
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = normalise(ipaddr.parse(stripBrackets(address)));
    } catch {
      return `'${address}' is not an IP address`;
    }
    for (const [net, bits] of this.cidrs) {
      if (net.kind() === addr.kind() && addr.match(net, bits)) return undefined;
    }
    const range = addr.range();
    return range === "unicast" ? undefined : `${addr.toString()} is a ${range} address`;
  }
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
