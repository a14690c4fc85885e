import { configSchema } from "./config";
import { REDACTED, SecretRedactor, publicConfig, redactSecrets } from "./redact";

describe("SecretRedactor", () => {
  const r = new SecretRedactor(["my-own-upstream-secret-123", "tenant-key-xyz", "abc"]);

  it("removes every configured secret by value, and never a too-short one", () => {
    expect(r.redact("bad key my-own-upstream-secret-123 (and tenant-key-xyz)")).toBe(
      `bad key ${REDACTED} (and ${REDACTED})`,
    );
    expect(r.redact("abc stays: too short to be told from a word")).toBe(
      "abc stays: too short to be told from a word",
    );
  });

  it.each([
    ["Invalid request made with key sk-proj-AbCdEf123456", `Invalid request made with key ${REDACTED}`],
    ["key sk-ant-api03-xyzXYZ_-12345 rejected", `key ${REDACTED} rejected`],
    ["API key AIzaSyA1234567890abcdefghijklmnop is invalid", `API key ${REDACTED} is invalid`],
    ["secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `secret ${REDACTED}`],
    ["header was Authorization: Bearer abcdefgh12345678", `header was Authorization: Bearer ${REDACTED}`],
    ["GET /v1beta/models?key=AIzaSecretValue&alt=sse", `GET /v1beta/models?key=${REDACTED}&alt=sse`],
    ['{"x-api-key": "some-long-secret"}', `{"x-api-key": "${REDACTED}"}`],
    ["gsk_abcdefghijklmnopqrstu used", `${REDACTED} used`],
  ])("removes what is shaped like a secret: %s", (input, want) => {
    expect(redactSecrets(input)).toBe(want);
  });

  it("leaves ordinary upstream messages alone", () => {
    const msg =
      "This model's maximum context length is 8192 tokens. Please reduce the length of the messages.";
    expect(redactSecrets(msg)).toBe(msg);
    expect(redactSecrets("job_01HZX task-sk is fine")).toBe("job_01HZX task-sk is fine");
  });

  it("shows a config without any of its secrets (GET /admin/config)", () => {
    const cfg = configSchema.parse({
      providers: [
        {
          id: "openai",
          type: "openai-compatible",
          base_url: "https://user:pa55word@llm.internal/v1",
          headers: { "x-org-token": "org-secret-value" },
          keys: [{ id: "k1", secret: "sk-provider-secret-1" }],
        },
      ],
      models: { m: { provider: "openai", options: { extra_body: { note: "sk-provider-secret-1" } } } },
      tenants: [
        {
          id: "t",
          tier: "paid",
          api_keys: ["tenant-key-secret"],
          signing: { secrets: ["signing-secret-0123456789"] },
        },
      ],
    });
    const text = JSON.stringify(publicConfig(cfg));
    for (const secret of [
      "sk-provider-secret-1",
      "tenant-key-secret",
      "signing-secret-0123456789",
      "org-secret-value",
      "pa55word",
    ])
      expect(text).not.toContain(secret);
    expect(text).toContain('"id":"k1"');
    expect(text).toContain("llm.internal");
  });
});
