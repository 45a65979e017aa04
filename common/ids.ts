/**
 * The rule for device, sensor and gateway ids (docs/contract.md, "MQTT input"), written once: in `common/`
 * so the settings (GATEWAY_ID, the query parameters) and the contract's reading rules (`schemas/rules.ts`, which
 * re-exports it) all take it from one place below them.
 */

/** Longest device, sensor or gateway id, in characters. */
export const MAX_ID_LENGTH = 128;
/** The characters of an id, as the inside of a regular expression's character class. */
const ID_CHARACTERS = "A-Za-z0-9._:-";

/** Device, sensor and gateway ids: 1 to 128 characters of letters, digits, `.`, `_`, `-`, `:`. */
export const ID_PATTERN = new RegExp(`^[${ID_CHARACTERS}]{1,${MAX_ID_LENGTH}}$`);
const NOT_ID_CHARACTER = new RegExp(`[^${ID_CHARACTERS}]`, "g");

/** {@link ID_PATTERN} in words, for the reason or error that names an id breaking it. */
export const ID_RULE = `1-${MAX_ID_LENGTH} of letters, digits, . _ - :`;

/**
 * The id nearest to a free text such as a host name: each character the id rules do not allow becomes `-`, and
 * the result is cut to {@link MAX_ID_LENGTH}. Empty for an empty text (the caller picks a fallback).
 */
export function idFrom(text: string): string {
  return text.replace(NOT_ID_CHARACTER, "-").slice(0, MAX_ID_LENGTH);
}
