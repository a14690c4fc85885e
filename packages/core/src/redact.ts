import type { SwitchyardConfig } from "./config";

/**
 * Removes secrets from text that came from outside (an upstream's error message, a library's
 * error) before it is stored, logged or sent: every secret the config holds, by value, and
 * anything shaped like a provider key, a bearer token, a webhook secret or a key in a URL.
 */
export const REDACTED = "[redacted]";

const SHAPES: readonly [RegExp, string][] = [
  // OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-) and most compatible servers.
  [/\bsk-[A-Za-z0-9_-]{6,}/g, REDACTED],
  // Google API keys.
  [/\bAIza[0-9A-Za-z_-]{20,}/g, REDACTED],
  // Standard Webhooks secrets.
  [/\bwhsec_[A-Za-z0-9+/=]{8,}/g, REDACTED],
  // Other vendors' prefixed keys (xAI, Groq, Hugging Face, Stripe-style).
  [/\b(?:xai|gsk|hf|rk_live|sk_live|pk_live)[-_][A-Za-z0-9]{16,}/g, REDACTED],
  // Authorization header values quoted back.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  // Keys and tokens in URLs (?key=, &api_key=, access_token=).
  [/([?&](?:key|api[_-]?key|access[_-]?token|token|secret)=)[^&\s"'<>]+/gi, `$1${REDACTED}`],
  // "x-api-key: ..." / "api_key": "..." quoted back.
  [/((?:x-api-key|x-goog-api-key|api[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;]{6,}/gi, `$1${REDACTED}`],
];

/** Secrets shorter than this are not replaced by value (they would match ordinary words). */
const MIN_SECRET_LENGTH = 6;

export class SecretRedactor {
  private readonly secrets: string[];

  constructor(secrets: Iterable<string> = []) {
    // Longest first, so a secret that contains another is removed whole.
    this.secrets = [...new Set(secrets)]
      .filter((s) => s.length >= MIN_SECRET_LENGTH)
      .sort((a, b) => b.length - a.length);
  }

  static fromConfig(cfg: Pick<SwitchyardConfig, "providers" | "tenants">): SecretRedactor {
    return new SecretRedactor(configSecrets(cfg));
  }

  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
    for (const [re, replacement] of SHAPES) out = out.replace(re, replacement);
    return out;
  }
}

/** Every secret the config holds: provider key secrets, tenant API keys and signing secrets. */
export function configSecrets(cfg: Pick<SwitchyardConfig, "providers" | "tenants">): string[] {
  return [
    ...cfg.providers.flatMap((p) => p.keys.map((k) => k.secret)),
    ...cfg.tenants.flatMap((t) => [...t.api_keys, ...(t.signing?.secrets ?? [])]),
  ];
}

/** Redacts with shapes only (and the given secrets): for places that hold no config. */
export const redactSecrets = (text: string, secrets: Iterable<string> = []): string =>
  new SecretRedactor(secrets).redact(text);

/**
 * The config as operators may see it (GET /admin/config): provider key secrets, tenant API keys,
 * signing secrets and extra header values replaced, credentials in URLs removed, and every string
 * left passed through the redactor, so a secret written anywhere else does not show either.
 */
export function publicConfig(cfg: SwitchyardConfig): unknown {
  const redactor = SecretRedactor.fromConfig(cfg);
  const clean = (value: unknown, key?: string): unknown => {
    if (typeof value === "string") {
      if (key === "secret") return REDACTED;
      const noUserInfo = value.replace(/^(\w+:\/\/)[^/@\s]*@/, `$1${REDACTED}@`);
      return redactor.redact(noUserInfo);
    }
    if (Array.isArray(value)) {
      if (key === "api_keys" || key === "secrets") return value.map(() => REDACTED);
      return value.map((v) => clean(v));
    }
    if (value && typeof value === "object") {
      if (key === "headers") return Object.fromEntries(Object.keys(value).map((k) => [k, REDACTED]));
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v, k)]));
    }
    return value;
  };
  return clean(cfg);
}
