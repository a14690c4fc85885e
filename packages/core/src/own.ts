/**
 * Lookups by a name that came from outside (a request's model, a header, a key id) must only
 * ever find what the config defines: `config.models["constructor"]` would find Object's
 * constructor through the prototype. Every such lookup goes through here.
 */
export function ownEntry<T>(record: Readonly<Record<string, T>> | undefined, name: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, name) ? record[name] : undefined;
}
