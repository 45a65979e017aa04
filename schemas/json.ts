/** A JSON object (not null, not an array): a schema in object form, a record's field, a reading's tags. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
