/**
 * Every released version of the reading schema, loaded from `schemas/`, and the codec of queue message bodies built
 * on them. Every released `reading.v<N>.avsc` is decodable; the highest version is the current schema.
 */
import avro from "avsc";
import { canonicalForm } from "./canonical-form.js";
import { DecodeError, SingleObjectCodec } from "./codec.js";
import { incompatibilities } from "./compat.js";
import { readSchemaFiles, type SchemaFile } from "./files.js";
import { crc64Avro } from "./fingerprint.js";
import { isObject } from "./json.js";
import { longHook } from "./long.js";
import type { Reading } from "./reading.js";

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

type AvroSchema = Parameters<typeof avro.Type.forSchema>[0];
type AvroResolver = ReturnType<avro.Type["createResolver"]>;

interface LoadedVersion {
  readonly info: SchemaVersion;
  readonly type: avro.Type;
  /** Resolver from this version (writer) to the current one (reader); undefined for the current version. */
  readonly resolver: AvroResolver | undefined;
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

  /** Every batch version found (`reading-batch.v<N>.avsc`), lowest first; empty when the folder has none. */
  readonly batchVersions: readonly SchemaVersion[];
  /** The highest batch version: what `frameBatch` writes; undefined without batch schemas. */
  readonly currentBatch: SchemaVersion | undefined;

  readonly #codec: SingleObjectCodec<Reading>;
  readonly #batchCodec: SingleObjectCodec<{ readings: Reading[] }> | undefined;

  private constructor(loaded: LoadedVersion[], batches: LoadedVersion[]) {
    const current = loaded[loaded.length - 1];
    if (current === undefined) throw new Error("no schema versions");
    this.versions = Object.freeze(loaded.map((v) => v.info));
    this.current = current.info;
    this.#codec = codecOf(current, loaded, "reading");
    const batch = batches.at(-1);
    this.batchVersions = Object.freeze(batches.map((v) => v.info));
    this.currentBatch = batch?.info;
    this.#batchCodec = batch ? codecOf(batch, batches, "batch") : undefined;
  }

  /**
   * Loads every `reading.v<N>.avsc` of `dir` (default: the repository's `schemas/` folder, found from this
   * module's location both as TypeScript source and as compiled `dist/schemas/`). The highest `<N>` is the
   * current schema. Throws an Error naming the folder or file when no schema file is found, a file is not a valid
   * Avro record schema, two versions share a fingerprint, or an older version cannot be resolved to the current one
   * (a new version must stay backward compatible with every released one).
   */
  static load(dir?: string): SchemaRegistry {
    const { dir: folder, files } = readSchemaFiles(dir);
    const readings = loadFamily(files);
    const batches = loadFamily(readSchemaFiles(folder, "reading-batch").files);
    const current = readings.at(-1)!.info;
    const batch = batches.at(-1)?.info;
    if (batch && itemCanonicalForm(batch) !== current.canonical) {
      throw new Error(
        `${batch.file} does not hold the current reading record of ${current.file}: a gateway would write batches ` +
          `of an older reading; add reading-batch.v${batch.version + 1}.avsc with the record of ${current.file}`,
      );
    }
    return new SchemaRegistry(readings, batches);
  }

  /**
   * The single-object encoding of `reading` with the current schema: `C3 01`, its 8-byte fingerprint, the Avro
   * binary datum. The returned Buffer is the caller's. Throws an Error (not a DecodeError) when `reading` does not
   * fit the schema, e.g. a missing string or a `ts` that is not an integer.
   */
  encode(reading: Reading): Buffer {
    try {
      return this.#codec.encode(reading);
    } catch (err) {
      throw new Error(`cannot encode reading: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The reading in a message body. The writer schema is found by the body's fingerprint; a body written with an
   * older version is resolved to the current schema (fields it lacks take their defaults). Returns a plain object
   * with the current schema's fields. Throws only {@link DecodeError}: `not-avro` for a body shorter than 10 bytes
   * or without `C3 01`; `unknown-schema` with the message `unknown schema <16 hex digits as in the body>`;
   * `truncated` when the datum ends early; `invalid` for trailing bytes or values the schema does not allow.
   */
  decode(body: Buffer): Reading {
    return this.#codec.decode(body);
  }

  /** The Avro datum of `reading` with the current schema, without header: what `frameSingle`/`frameBatch` carry. */
  encodeDatum(reading: Reading): Buffer {
    try {
      return this.#codec.encodeDatum(reading);
    } catch (err) {
      throw new Error(`cannot encode reading: ${(err as Error).message}`, { cause: err });
    }
  }

  /** A single-reading message body (current reading schema) around a datum from `encodeDatum`. */
  frameSingle(datum: Buffer): Buffer {
    return this.#codec.frame(datum);
  }

  /**
   * A batch message body (current batch schema) holding the readings whose datums (from `encodeDatum`) are given,
   * in order; `bytes` is the sum of their lengths. Throws when the folder has no batch schema.
   */
  frameBatch(datums: readonly Buffer[], bytes: number): Buffer {
    if (!this.#batchCodec) throw new Error("no reading-batch.v<N>.avsc schema: batches cannot be written");
    return this.#batchCodec.frameArray(datums, bytes);
  }

  /**
   * The readings of a queue message of either kind: a batch (any batch version, resolved to the current one) or a
   * single reading (any reading version). Throws only {@link DecodeError}, as `decode` does; an empty batch is
   * `invalid`.
   */
  decodeMessage(body: Buffer): { readonly readings: readonly Reading[]; readonly batch: boolean } {
    const batches = this.#batchCodec;
    if (batches?.accepts(body)) {
      const { readings } = batches.decode(body);
      if (readings.length === 0)
        throw new DecodeError("invalid", "empty batch: a batch holds at least one reading");
      return { readings, batch: true };
    }
    return { readings: [this.#codec.decode(body)], batch: false };
  }

  /** The version whose fingerprint is `fp` (8 bytes, little-endian as on the wire), or undefined if none is. */
  byFingerprint(fp: Buffer): SchemaVersion | undefined {
    if (fp.length !== 8) return undefined;
    return [...this.versions, ...this.batchVersions].find((v) => v.fingerprint.equals(fp));
  }
}

/**
 * Parses every file of one family, lowest version first, and builds the resolver from each older version to the
 * highest. Throws an Error naming the file when one is not a valid Avro record schema, two share a fingerprint, or
 * an older version cannot be resolved to the highest (a new version must stay backward compatible).
 */
function loadFamily(files: readonly SchemaFile[]): LoadedVersion[] {
  if (files.length === 0) return [];
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
    return { info, type: p.type, resolver };
  });
  return loaded;
}

/** The Parsing Canonical Form of the item record of a batch schema's `readings` array. */
function itemCanonicalForm(batch: SchemaVersion): string {
  const field = (batch.schema.fields as unknown[] | undefined)?.[0];
  const type = isObject(field) ? field.type : undefined;
  return canonicalForm(isObject(type) ? type.items : undefined);
}

/** The codec of one family: writes `current`, reads every loaded version (the current first: nearly all messages). */
function codecOf<T extends object>(
  current: LoadedVersion,
  loaded: readonly LoadedVersion[],
  what: string,
): SingleObjectCodec<T> {
  const writers = [...loaded].reverse().map(({ info, resolver }) => ({
    fingerprint: info.fingerprint,
    label: `${what} of ${info.file} (${info.fingerprintHex})`,
    resolver,
  }));
  return new SingleObjectCodec<T>(current.type, current.info.fingerprint, current.info.fields, writers);
}
