/**
 * The Avro schemas of the queue and the code that writes and reads queue message bodies.
 *
 * Wire format of every message body (Avro "single-object encoding"): the two bytes `C3 01`, the 8-byte
 * little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary datum.
 * Every released `reading.v<N>.avsc` in this folder is decodable; the highest version is the current schema.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import avro from "avsc";
import { incompatibilities } from "./compat.js";
import type { Reading } from "./reading.js";

export { DEFAULT_QUALITY, QUALITIES, type Quality, type Reading } from "./reading.js";
export {
  ID_PATTERN,
  ID_RULE,
  ISO_WITH_OFFSET,
  MIN_TS,
  parseTimestamp,
  readingProblem,
} from "./rules.js";

/**
 * Why a message body could not be decoded:
 * - `not-avro`: not Avro single-object encoding (shorter than the 10-byte header, or no `C3 01` marker);
 * - `unknown-schema`: the fingerprint names no schema version in `schemas/`;
 * - `truncated`: the datum ends before the writer schema's reading is complete;
 * - `invalid`: bytes left over after the datum, or a value the writer schema does not allow.
 */
export type DecodeFailure = "not-avro" | "unknown-schema" | "truncated" | "invalid";

/**
 * The only error {@link SchemaRegistry.decode} throws. `kind` says which way the body failed and `message` gives
 * the precise reason, fit for a log line or a dead-letter header.
 */
export class DecodeError extends Error {
  /** Which way the body failed to decode. */
  readonly kind: DecodeFailure;

  constructor(kind: DecodeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecodeError";
    this.kind = kind;
  }
}

/** One released version of the reading schema, as loaded from `reading.v<version>.avsc`. */
export interface SchemaVersion {
  /** The `<N>` of `reading.v<N>.avsc`; versions are ordered by this number. */
  readonly version: number;
  /** File name of the schema, e.g. `reading.v1.avsc` (inside the folder the registry was loaded from). */
  readonly file: string;
  /** CRC-64-AVRO fingerprint of the Parsing Canonical Form: 8 bytes, little-endian, as written on the wire. */
  readonly fingerprint: Buffer;
  /** The 8 fingerprint bytes in wire order as 16 lowercase hex digits. */
  readonly fingerprintHex: string;
  /** The schema's Parsing Canonical Form (Avro specification). */
  readonly canonical: string;
  /** The record's field names, in schema order. */
  readonly fields: readonly string[];
  /** The schema itself: the parsed JSON of the `.avsc` file. */
  readonly schema: Readonly<Record<string, unknown>>;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing Canonical Form

const PRIMITIVES = new Set(["null", "boolean", "int", "long", "float", "double", "bytes", "string"]);
const NAMED = new Set(["record", "error", "enum", "fixed"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function schemaError(message: string): Error {
  return new Error(`invalid Avro schema: ${message}`);
}

/** Full name of a named type per the specification: a dotted name is already full; else prefix the namespace. */
function fullName(name: string, namespace: string): string {
  return name.includes(".") || namespace === "" ? name : `${namespace}.${name}`;
}

function namespaceOf(full: string): string {
  const dot = full.lastIndexOf(".");
  return dot < 0 ? "" : full.slice(0, dot);
}

/**
 * The Avro specification's Parsing Canonical Form of a schema given as its JSON value (the result of `JSON.parse`
 * of an `.avsc`; a string is a type name, e.g. `"int"`). Applies [PRIMITIVES], [FULLNAMES], [STRIP] (only `type`,
 * `name`, `fields`, `symbols`, `items`, `values`, `size` are kept), [ORDER], [STRINGS], [INTEGERS] and
 * [WHITESPACE]. A logical type reduces to its underlying type (`{"type":"long","logicalType":"timestamp-millis"}`
 * becomes `"long"`) and an `error` is written as a `record`, as Apache Avro Java's `SchemaNormalization` does.
 * Throws an Error for a value that is not a valid schema (including a reference to an undefined named type).
 */
export function canonicalForm(schema: unknown): string {
  return canonical(schema, "", new Set<string>());
}

function canonical(schema: unknown, namespace: string, defined: Set<string>): string {
  if (typeof schema === "string") {
    if (PRIMITIVES.has(schema)) return JSON.stringify(schema);
    return JSON.stringify(resolveReference(schema, namespace, defined));
  }
  if (Array.isArray(schema)) {
    return `[${schema.map((branch) => canonical(branch, namespace, defined)).join(",")}]`;
  }
  if (!isObject(schema)) throw schemaError(`${JSON.stringify(schema)} is not a schema`);
  const type = schema.type;
  if (typeof type !== "string") {
    // {"type": <schema>} is accepted as that schema; Avro's parsers differ here, the canonical form does not.
    if (type === undefined) throw schemaError(`object without "type": ${JSON.stringify(schema)}`);
    return canonical(type, namespace, defined);
  }
  if (PRIMITIVES.has(type)) return JSON.stringify(type); // [PRIMITIVES], and logical types reduce to this
  switch (type) {
    case "array":
      if (schema.items === undefined) throw schemaError('array without "items"');
      return `{"type":"array","items":${canonical(schema.items, namespace, defined)}}`;
    case "map":
      if (schema.values === undefined) throw schemaError('map without "values"');
      return `{"type":"map","values":${canonical(schema.values, namespace, defined)}}`;
  }
  if (!NAMED.has(type)) {
    // {"type": "Name"}: a reference to a named type in object form.
    return JSON.stringify(resolveReference(type, namespace, defined));
  }
  const name = schema.name;
  if (typeof name !== "string" || name === "") throw schemaError(`${type} without a "name"`);
  const ownNamespace = typeof schema.namespace === "string" ? schema.namespace : namespace;
  const full = fullName(name, ownNamespace);
  if (defined.has(full)) throw schemaError(`type ${full} is defined twice`);
  defined.add(full);
  const head = `{"name":${JSON.stringify(full)},"type":`;
  if (type === "enum") {
    const symbols = schema.symbols;
    if (!Array.isArray(symbols) || !symbols.every((s) => typeof s === "string")) {
      throw schemaError(`enum ${full} without a "symbols" array of strings`);
    }
    return `${head}"enum","symbols":[${symbols.map((s) => JSON.stringify(s)).join(",")}]}`;
  }
  if (type === "fixed") {
    const size = schema.size;
    if (typeof size !== "number" || !Number.isInteger(size) || size < 0) {
      throw schemaError(`fixed ${full} without a non-negative integer "size"`);
    }
    return `${head}"fixed","size":${String(size)}}`;
  }
  // record or error: nested names take the namespace of the record's full name.
  const fields = schema.fields;
  if (!Array.isArray(fields)) throw schemaError(`record ${full} without a "fields" array`);
  const inner = namespaceOf(full);
  const parts = fields.map((field: unknown) => {
    if (!isObject(field) || typeof field.name !== "string") {
      throw schemaError(`record ${full} has a field without a "name"`);
    }
    if (field.type === undefined) throw schemaError(`field ${full}.${field.name} without a "type"`);
    return `{"name":${JSON.stringify(field.name)},"type":${canonical(field.type, inner, defined)}}`;
  });
  return `${head}"record","fields":[${parts.join(",")}]}`;
}

function resolveReference(name: string, namespace: string, defined: Set<string>): string {
  const qualified = fullName(name, namespace);
  if (defined.has(qualified)) return qualified;
  if (defined.has(name)) return name; // a short name of the null namespace, as Java resolves it
  throw schemaError(`reference to undefined type ${JSON.stringify(name)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// CRC-64-AVRO

const CRC64_EMPTY = 0xc15d213aa4d7a795n;
const CRC64_MASK = 0xffffffffffffffffn;
const CRC64_TABLE: readonly bigint[] = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (CRC64_EMPTY & (-(fp & 1n) & CRC64_MASK));
  return fp;
});

/**
 * CRC-64-AVRO, the Rabin fingerprint of the Avro specification (EMPTY = 0xc15d213aa4d7a795), of the bytes of
 * `data` (a string is taken as UTF-8). Returned as 8 bytes, little-endian: the order single-object encoding writes.
 */
export function crc64Avro(data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let fp = CRC64_EMPTY;
  for (const b of bytes) fp = (fp >> 8n) ^ CRC64_TABLE[Number((fp ^ BigInt(b)) & 0xffn)]!;
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Longs

/** The part of avsc's (internal) Tap that a type's `_read`/`_write` use: the buffer and the position in it. */
interface Tap {
  buf: Buffer;
  pos: number;
}

const INT30 = 0x40000000;

/**
 * avsc's own long codec is exact only within [-2^52, 2^53): beyond -2^52 it computes the zig-zag value `-2n-1` in
 * floating point, which rounds, so `-(2^53-2)` is written as `+(2^53-2)`. This long is exact for every safe
 * integer, ±(2^53-1), and refuses on read any long outside that range (avsc: "potential precision loss") or longer
 * than the 10 bytes a 64-bit varint can take. Values are plain numbers. Its methods never use `this`, because avsc
 * also calls `_read` detached, as a resolver's read function.
 */
class SafeLongType extends avro.types.LongType {
  _check(value: unknown, _flags?: number, hook?: (value: unknown, type: avro.Type) => void): boolean {
    const ok = Number.isSafeInteger(value);
    if (!ok && hook) hook(value, this);
    return ok;
  }

  _read(tap: Tap): number {
    const buf = tap.buf;
    let pos = tap.pos;
    let b = buf[pos++] ?? 0; // past the end: stop; avsc then sees pos > length and reports the datum truncated
    const negative = b & 1;
    let half = (b & 0x7f) >>> 1; // floor(zigzag / 2), exact while below 2^53
    let scale = 64;
    for (let n = 1; b & 0x80; n++) {
      if (n === 10) throw new Error("invalid long: more than 10 bytes");
      b = buf[pos++] ?? 0;
      half += (b & 0x7f) * scale;
      scale *= 128;
    }
    tap.pos = pos;
    if (!(half < Number.MAX_SAFE_INTEGER || (half === Number.MAX_SAFE_INTEGER && !negative))) {
      throw new Error("potential precision loss: long beyond ±(2^53-1)");
    }
    return negative ? -half - 1 : half;
  }

  _write(tap: Tap, value: unknown): void {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      throw new Error(`invalid "long": ${JSON.stringify(value) ?? String(value)}`);
    }
    const buf = tap.buf; // bytes past its end are dropped; the caller sees pos > length and retries larger
    let pos = tap.pos;
    if (value >= -INT30 && value < INT30) {
      let z = value >= 0 ? value << 1 : (~value << 1) | 1;
      while (z > 0x7f) {
        buf[pos++] = (z & 0x7f) | 0x80;
        z >>>= 7;
      }
      buf[pos++] = z;
    } else {
      // zigzag = 2m + sign, m = value or -value-1. 2m is exact (even, at most 2^54); 2m + 1 might not be, so the
      // sign goes into the first byte's low bit, which 2m leaves 0. `& 0x7f` takes the low 7 bits of the integer
      // part; dividing by 128 is exact.
      let f = value >= 0 ? value * 2 : (-value - 1) * 2;
      let b = (f & 0x7f) | (value < 0 ? 1 : 0);
      f /= 128;
      while (f >= 1) {
        buf[pos++] = b | 0x80;
        b = f & 0x7f;
        f /= 128;
      }
      buf[pos++] = b;
    }
    tap.pos = pos;
  }
}

/** avsc type hook: every `long` (also `{"type":"long","logicalType":...}`) becomes a {@link SafeLongType}. */
function longHook(schema: unknown): avro.Type | undefined {
  return schema === "long" || (isObject(schema) && schema.type === "long") ? new SafeLongType() : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Registry

const MARKER_0 = 0xc3;
const MARKER_1 = 0x01;
const HEADER_LENGTH = 10;
/** Zero bytes appended to a body that reads past its end, to tell a truncated datum from an invalid one. */
const OVERRUN_PADDING = 65_536;
const FILE_PATTERN = /^reading\.v([1-9][0-9]*)\.avsc$/;

type AvroSchema = Parameters<typeof avro.Type.forSchema>[0];
type AvroResolver = ReturnType<avro.Type["createResolver"]>;

interface LoadedVersion {
  readonly info: SchemaVersion;
  readonly type: avro.Type;
  /** Resolver from this version (writer) to the current one (reader); undefined for the current version. */
  readonly resolver: AvroResolver | undefined;
  /** The fingerprint as two little-endian 32-bit words, for a lookup that allocates nothing. */
  readonly lo: number;
  readonly hi: number;
}

/** Folder of this module: `schemas/` when run from source, `dist/schemas/` when run compiled. */
const MODULE_DIR = dirname(fileURLToPath(import.meta.url));

function hasSchemaFiles(dir: string): boolean {
  try {
    return readdirSync(dir).some((name) => FILE_PATTERN.test(name));
  } catch {
    return false; // missing or not a folder
  }
}

/** Where to look without a folder: from source this module sits in <repo>/schemas, compiled in <repo>/dist/schemas. */
const DEFAULT_DIRS = [MODULE_DIR, resolve(MODULE_DIR, "..", "..", "schemas")];

/** One `reading.v<N>.avsc` file of a schema folder, its JSON parsed but not yet checked as a schema. */
export interface SchemaFile {
  /** File name, e.g. `reading.v2.avsc`. */
  readonly file: string;
  /** The `<N>` of the file name. */
  readonly version: number;
  /** Absolute path of the file. */
  readonly path: string;
  /** The parsed JSON. */
  readonly schema: unknown;
}

/**
 * The `reading.v<N>.avsc` files of `dir`, lowest version first, each parsed as JSON. Without `dir`, the
 * repository's `schemas/` folder (found from this module's location both as TypeScript source and as compiled
 * `dist/schemas/index.js`). Returns the absolute folder too. Throws an Error naming the folder when it cannot be
 * read or holds no schema file, or naming the file when it cannot be read or is not JSON.
 */
export function readSchemaFiles(dir?: string): { dir: string; files: SchemaFile[] } {
  if (dir === undefined) {
    const found = DEFAULT_DIRS.find(hasSchemaFiles);
    if (found === undefined) {
      throw new Error(`no reading.v<N>.avsc schema file found in ${DEFAULT_DIRS.join(" or ")}`);
    }
    return readSchemaFiles(found);
  }
  const folder = resolve(dir);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (err) {
    throw new Error(`cannot read the schema folder ${folder}: ${(err as Error).message}`, { cause: err });
  }
  const found = names
    .map((file) => ({ file, match: FILE_PATTERN.exec(file) }))
    .filter((f): f is { file: string; match: RegExpExecArray } => f.match !== null)
    .map(({ file, match }) => ({ file, version: Number(match[1]) }))
    .sort((a, b) => a.version - b.version);
  if (found.length === 0) throw new Error(`no reading.v<N>.avsc schema file found in ${folder}`);
  const files = found.map(({ file, version }, i): SchemaFile => {
    const previous = found[i - 1];
    if (previous !== undefined && previous.version === version) {
      throw new Error(`${previous.file} and ${file} are both version ${version}`);
    }
    const path = join(folder, file);
    let schema: unknown;
    try {
      schema = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new Error(`schema ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    return { file, version, path, schema };
  });
  return { dir: folder, files };
}

/**
 * Every released version of the reading schema, and the codec of queue message bodies built on them. Load it once
 * and share it: `encode` and `decode` do no schema work per call.
 */
export class SchemaRegistry {
  /** Every version found, ordered by version number, lowest first. */
  readonly versions: readonly SchemaVersion[];
  /** The highest version: the writer schema of `encode` and the reader schema `decode` resolves every version to. */
  readonly current: SchemaVersion;

  readonly #loaded: readonly LoadedVersion[];
  readonly #lookup: readonly LoadedVersion[]; // current first: nearly every message is written with it
  readonly #type: avro.Type;
  readonly #fields: readonly string[];
  #scratch: Buffer;
  #padded: Buffer = Buffer.alloc(0);

  private constructor(loaded: LoadedVersion[]) {
    const current = loaded[loaded.length - 1];
    if (current === undefined) throw new Error("no schema versions");
    this.#loaded = loaded;
    this.#lookup = [...loaded].reverse();
    this.#type = current.type;
    this.#fields = current.info.fields;
    this.versions = Object.freeze(loaded.map((v) => v.info));
    this.current = current.info;
    this.#scratch = SchemaRegistry.#newScratch(current.info.fingerprint, 4096);
  }

  /**
   * Loads every `reading.v<N>.avsc` of `dir` (default: the repository's `schemas/` folder, found from this
   * module's location both as TypeScript source and as compiled `dist/schemas/index.js`). The highest `<N>` is the
   * current schema. Throws an Error naming the folder or file when no schema file is found, a file is not a valid
   * Avro record schema, two versions share a fingerprint, or an older version cannot be resolved to the current one
   * (a new version must stay backward compatible with every released one).
   */
  static load(dir?: string): SchemaRegistry {
    const { files } = readSchemaFiles(dir);
    const parsed = files.map(({ file, version, path, schema }) => {
      let type: avro.Type;
      let canonical: string;
      try {
        canonical = canonicalForm(schema);
        // No logicalTypes option: timestamp-millis is read as its underlying long, a plain number (not a Date).
        type = avro.Type.forSchema(schema as AvroSchema, { wrapUnions: "never", typeHook: longHook });
      } catch (err) {
        throw new Error(`schema ${path} is not a valid Avro schema: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (!isObject(schema) || schema.type !== "record" || !Array.isArray(schema.fields)) {
        throw new Error(`schema ${path} is not an Avro record schema`);
      }
      const fields = Object.freeze(schema.fields.map((f: unknown) => (isObject(f) ? String(f.name) : "")));
      const fingerprint = crc64Avro(canonical);
      return { file, version, path, schema, type, canonical, fields, fingerprint };
    });

    const current = parsed[parsed.length - 1]!;
    const loaded = parsed.map((p, i): LoadedVersion => {
      const twin = parsed.findIndex((q) => q.fingerprint.equals(p.fingerprint));
      if (twin !== i) {
        throw new Error(`${p.file} has the same canonical form and fingerprint as ${parsed[twin]!.file}`);
      }
      let resolver: AvroResolver | undefined;
      if (p !== current) {
        try {
          resolver = current.type.createResolver(p.type);
        } catch (err) {
          // The field-level analysis says which field breaks, where avsc's message can be vague.
          const why = incompatibilities(current.schema, p.schema);
          throw new Error(
            `${current.file} cannot read data written with ${p.file} (not backward compatible): ${
              why.length > 0 ? why.join("; ") : (err as Error).message
            }`,
            { cause: err },
          );
        }
      }
      const info: SchemaVersion = Object.freeze({
        version: p.version,
        file: p.file,
        fingerprint: Buffer.from(p.fingerprint),
        fingerprintHex: p.fingerprint.toString("hex"),
        canonical: p.canonical,
        fields: p.fields,
        schema: p.schema,
      });
      return {
        info,
        type: p.type,
        resolver,
        lo: p.fingerprint.readUInt32LE(0),
        hi: p.fingerprint.readUInt32LE(4),
      };
    });
    return new SchemaRegistry(loaded);
  }

  static #newScratch(fingerprint: Buffer, size: number): Buffer {
    const scratch = Buffer.allocUnsafe(size);
    scratch[0] = MARKER_0;
    scratch[1] = MARKER_1;
    fingerprint.copy(scratch, 2);
    return scratch;
  }

  /**
   * The single-object encoding of `reading` with the current schema: `C3 01`, its 8-byte fingerprint, the Avro
   * binary datum. The returned Buffer is the caller's. Throws an Error (not a DecodeError) when `reading` does not
   * fit the schema, e.g. a missing string or a `ts` that is not an integer.
   */
  encode(reading: Reading): Buffer {
    let end: number;
    try {
      end = this.#type.encode(reading, this.#scratch, HEADER_LENGTH);
      while (end < 0) {
        // The datum did not fit: `-end` bytes were missing. Grow the scratch buffer and write again.
        this.#scratch = SchemaRegistry.#newScratch(
          this.current.fingerprint,
          2 * (this.#scratch.length - end),
        );
        end = this.#type.encode(reading, this.#scratch, HEADER_LENGTH);
      }
    } catch (err) {
      throw new Error(`cannot encode reading: ${(err as Error).message}`, { cause: err });
    }
    const out = Buffer.allocUnsafe(end);
    this.#scratch.copy(out, 0, 0, end);
    return out;
  }

  /**
   * The reading in a message body. The writer schema is found by the body's fingerprint; a body written with an
   * older version is resolved to the current schema (fields it lacks take their defaults). Returns a plain object
   * with the current schema's fields. Throws only {@link DecodeError}: `not-avro` for a body shorter than 10 bytes
   * or without `C3 01`; `unknown-schema` with the message `unknown schema <16 hex digits as in the body>`;
   * `truncated` when the datum ends early; `invalid` for trailing bytes or values the schema does not allow.
   */
  decode(body: Buffer): Reading {
    try {
      return this.#decode(body);
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError("invalid", `body cannot be decoded: ${(err as Error)?.message ?? String(err)}`, {
        cause: err,
      });
    }
  }

  #decode(input: unknown): Reading {
    if (!(input instanceof Uint8Array)) {
      throw new DecodeError("not-avro", "body is not a byte buffer, so not Avro single-object encoding");
    }
    const body = Buffer.isBuffer(input)
      ? input
      : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (body.length < 2 || body[0] !== MARKER_0 || body[1] !== MARKER_1) {
      throw new DecodeError(
        "not-avro",
        `body of ${body.length} bytes is not Avro single-object encoding (no C3 01 marker)`,
      );
    }
    if (body.length < HEADER_LENGTH) {
      throw new DecodeError(
        "not-avro",
        `body of ${body.length} bytes is not Avro single-object encoding (shorter than the 10-byte header)`,
      );
    }
    const lo = body.readUInt32LE(2);
    const hi = body.readUInt32LE(6);
    let writer: LoadedVersion | undefined;
    for (const v of this.#lookup) {
      if (v.lo === lo && v.hi === hi) {
        writer = v;
        break;
      }
    }
    if (writer === undefined) {
      throw new DecodeError("unknown-schema", `unknown schema ${body.toString("hex", 2, HEADER_LENGTH)}`);
    }
    const what = `reading of ${writer.info.file} (${writer.info.fingerprintHex})`;
    let decoded: { value: unknown; offset: number };
    try {
      decoded = this.#type.decode(body, HEADER_LENGTH, writer.resolver);
    } catch (err) {
      throw new DecodeError("invalid", `invalid ${what}: ${(err as Error).message}`, { cause: err });
    }
    if (decoded.offset < 0) throw this.#overrun(body, writer, what);
    if (decoded.offset !== body.length) {
      throw new DecodeError(
        "invalid",
        `${body.length - decoded.offset} trailing bytes after the ${what} (datum of ${decoded.offset - HEADER_LENGTH} bytes)`,
      );
    }
    const record = decoded.value as Record<string, unknown>;
    const reading: Record<string, unknown> = {};
    for (const name of this.#fields) reading[name] = record[name];
    return reading as unknown as Reading;
  }

  /**
   * avsc reports both a datum that runs out of bytes and a negative length as "read past the end". Tell them apart
   * (cold path only): a truncated datum decodes once 64 KiB of zero bytes are appended; a negative length, or one
   * reaching even further past the end, does not.
   */
  #overrun(body: Buffer, writer: LoadedVersion, what: string): DecodeError {
    const datum = body.length - HEADER_LENGTH;
    const need = body.length + OVERRUN_PADDING;
    if (this.#padded.length < need) this.#padded = Buffer.alloc(need);
    const padded = this.#padded;
    body.copy(padded);
    try {
      if (this.#type.decode(padded, HEADER_LENGTH, writer.resolver).offset >= 0) {
        return new DecodeError("truncated", `truncated ${what}: the datum ends after ${datum} bytes`);
      }
    } catch {
      // Not a prefix of any valid datum: report it as invalid below.
    } finally {
      padded.fill(0, 0, body.length); // all zeros again for the next use
    }
    return new DecodeError(
      "invalid",
      `invalid ${what}: a length in the ${datum}-byte datum is negative or too large`,
    );
  }

  /** The version whose fingerprint is `fp` (8 bytes, little-endian as on the wire), or undefined if none is. */
  byFingerprint(fp: Buffer): SchemaVersion | undefined {
    if (fp.length !== 8) return undefined;
    return this.#loaded.find((v) => v.info.fingerprint.equals(fp))?.info;
  }
}
