import { createHash } from "node:crypto";

/**
 * Deterministic embeddings for tests (OpenAI's POST /v1/embeddings shape): a bag of content
 * words, each hashed into one of DIMS dimensions, normalised. Case, punctuation, word order and
 * filler words do not move the vector, so paraphrases built from the same words score close to
 * 1 and different content scores low. Like the real models' known failures ("enable" and
 * "disable" at 0.96, "2+2" and "2+3" alike), it is blind to what changes meaning most: every
 * number is the same word, negations vanish and antonyms fold into one word, so such pairs score
 * 1.0 and only Switchyard's own guards keep them apart.
 */
export const DIMS = 256;
const FILLER = new Set([
  "a",
  "an",
  "the",
  "is",
  "are",
  "was",
  "be",
  "to",
  "of",
  "in",
  "on",
  "for",
  "and",
  "or",
  "please",
  "can",
  "could",
  "you",
  "me",
  "my",
  "i",
  "what",
  "whats",
  "how",
  "do",
  "does",
  "tell",
  "about",
  "s",
  "it",
  "this",
  "that",
]);

const NEGATION = new Set(["not", "no", "never", "t", "cannot", "without"]);
const ANTONYM: Record<string, string> = {
  disable: "enable",
  decrease: "increase",
  remove: "add",
  deny: "allow",
  after: "before",
  below: "above",
  less: "more",
  min: "max",
  minimum: "maximum",
  false: "true",
  stop: "start",
  close: "open",
  sell: "buy",
  exclude: "include",
  last: "first",
  lose: "win",
  reject: "accept",
  decrypt: "encrypt",
  off: "on",
};

/** Content words: lowercase, filler and negations dropped, numbers and antonyms folded, plural "s" cut. */
export function contentWords(text: string): string[] {
  return (text.toLowerCase().match(/[a-z]+|[0-9]+/g) ?? [])
    .filter((w) => !FILLER.has(w) && !NEGATION.has(w))
    .map((w) => (/^[0-9]/.test(w) ? "<number>" : w))
    .map((w) => ANTONYM[w] ?? w)
    .map((w) => (w.length > 3 && w.endsWith("s") ? w.slice(0, -1) : w));
}

export function embed(text: string): number[] {
  const v = new Array<number>(DIMS).fill(0);
  for (const w of contentWords(text)) {
    const h = createHash("sha256").update(w).digest();
    const dim = h.readUInt16BE(0) % DIMS;
    v[dim] = (v[dim] ?? 0) + (h[2]! % 2 === 0 ? 1 : -1);
  }
  const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}
