/**
 * The Avro schemas of the queue and the code that writes and reads queue message bodies, and the contract's rules
 * for a reading that Avro cannot check. One file per concern; this is the export list every importer uses.
 */

export { canonicalForm } from "./canonical-form.js";
export type { DecodeFailure } from "./codec.js";
export { DecodeError } from "./codec.js";
export type { SchemaFile } from "./files.js";
export { readSchemaFiles } from "./files.js";
export { crc64Avro } from "./fingerprint.js";
export type { Quality, Reading } from "./reading.js";
export { DEFAULT_QUALITY, QUALITIES } from "./reading.js";
export type { SchemaVersion } from "./registry.js";
export { SchemaRegistry } from "./registry.js";
export {
  ID_PATTERN,
  ID_RULE,
  ISO_WITH_OFFSET,
  idFrom,
  MAX_ID_LENGTH,
  MIN_TS,
  nulProblem,
  parseTimestamp,
  readingProblem,
} from "./rules.js";
