import { REDACTED, SecretRedactor, redactSecrets } from "./redact";

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
});
