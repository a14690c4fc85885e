import { AddressPolicy } from "./address-policy";
import { webhookUrlProblem } from "./target";
import type { Resolver } from "./guarded-agent";

const strict = new AddressPolicy();

describe("webhook address policy", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.8.9.10", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.5.4", "private"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "linkLocal"],
    ["100.64.0.1", "carrierGradeNat"],
    ["0.0.0.0", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::ffff:127.0.0.1", "IPv4-mapped"],
    ["::ffff:10.1.1.1", "IPv4-mapped"],
    ["::ffff:169.254.169.254", "IPv4-mapped"],
    ["::ffff:8.8.8.8", "IPv4-mapped"],
    ["::127.0.0.1", "IPv4-compatible"],
    ["[::127.0.0.1]", "IPv4-compatible"],
    ["::169.254.169.254", "IPv4-compatible"],
    ["::10.0.0.1", "IPv4-compatible"],
    ["::8.8.8.8", "IPv4-compatible"],
    ["::7f00:1", "IPv4-compatible"],
    ["0:0:0:0:0:0:a9fe:a9fe", "IPv4-compatible"],
    ["::ffff:0:7f00:1", "IPv4-translated"],
    ["64:ff9b:1::a00:1", "NAT64"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"],
    ["100::1", "discard-only"],
    ["fec0::1", "site-local"],
    ["fd12:3456::1", "uniqueLocal"],
    ["fe80::1", "linkLocal"],
    ["::", "unspecified"],
    ["64:ff9b::7f00:1", "NAT64"],
    ["2002:7f00:1::1", "6to4"],
    ["224.0.0.1", "multicast"],
  ])("blocks %s (%s)", (address, range) => {
    expect(strict.blockedReason(address)).toContain(range);
  });

  it.each(["93.184.216.34", "8.8.8.8", "2606:4700::1111"])("allows the public address %s", (a) => {
    expect(strict.blockedReason(a)).toBeUndefined();
  });

  it("lets the allowlist open CIDRs, single addresses and host names, and nothing else", () => {
    const p = AddressPolicy.fromEnv(" 10.1.0.0/16, 127.0.0.1 ,receiver.internal,");
    expect(p.blockedReason("10.1.2.3")).toBeUndefined();
    expect(p.blockedReason("10.2.0.1")).toContain("private");
    expect(p.blockedReason("127.0.0.1")).toBeUndefined();
    expect(p.blockedReason("::ffff:127.0.0.1")).toBeUndefined();
    expect(p.blockedReason("127.0.0.2")).toContain("loopback");
    expect(p.allowsHost("receiver.internal")).toBe(true);
    expect(p.allowsHost("other.internal")).toBe(false);
    expect(() => AddressPolicy.fromEnv("10.0.0.0/99")).toThrow(/SWITCHYARD_WEBHOOK_ALLOWLIST/);
  });
});

describe("webhook URL checks at registration", () => {
  const fakeDns =
    (table: Record<string, string[]>): Resolver =>
    async (host) => {
      const addrs = table[host];
      if (!addrs) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      return addrs.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
    };
  const dns = fakeDns({
    "hooks.example.com": ["93.184.216.34"],
    "sneaky.example.com": ["93.184.216.34", "10.0.0.7"],
    "metadata.example.com": ["169.254.169.254"],
  });

  it("accepts public http(s) URLs", async () => {
    expect(await webhookUrlProblem("https://hooks.example.com/a?b=c", strict, dns)).toBeUndefined();
    expect(await webhookUrlProblem("http://93.184.216.34:8080/x", strict, dns)).toBeUndefined();
  });

  it.each([
    ["ftp://hooks.example.com/", /only http and https/],
    ["file:///etc/passwd", /only http and https/],
    ["not a url", /not a valid URL/],
    ["https://user:pw@hooks.example.com/", /credentials/],
    ["http://127.0.0.1/", /loopback/],
    ["http://10.0.0.1/", /private/],
    ["http://169.254.169.254/latest/meta-data/", /linkLocal/],
    ["http://[::1]:8080/", /loopback/],
    ["http://[::ffff:127.0.0.1]/", /IPv4-mapped/],
    ["http://[::ffff:7f00:1]/", /IPv4-mapped/],
    ["http://[::127.0.0.1]/hook", /IPv4-compatible/],
    ["http://[::169.254.169.254]/", /IPv4-compatible/],
    ["http://[::10.0.0.1]/", /IPv4-compatible/],
    ["http://[64:ff9b::a9fe:a9fe]/", /NAT64/],
    ["http://[2002:a9fe:a9fe::1]/", /6to4/],
    ["http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", /Teredo/],
    ["http://[100::1]/", /discard-only/],
    ["http://2130706433/", /loopback/],
    ["http://0x7f.1/", /loopback/],
    ["http://sneaky.example.com/", /private/],
    ["http://metadata.example.com/", /linkLocal/],
    ["http://nowhere.example.com/", /cannot resolve/],
  ])("refuses %s", async (url, why) => {
    expect(await webhookUrlProblem(url, strict, dns)).toMatch(why);
  });

  it("refuses a host name the system resolves to loopback (localhost)", async () => {
    expect(await webhookUrlProblem("http://localhost:9/hook", strict)).toMatch(
      /localhost resolves to .*loopback/,
    );
  });
});
