/**
 * Avro single-object encoding (Avro specification), the wire format of every message body: the two bytes `C3 01`,
 * the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro
 * binary datum.
 */
import type avro from "avsc";

/**
 * Why a message body could not be decoded:
 * - `not-avro`: not Avro single-object encoding (shorter than the 10-byte header, or no `C3 01` marker);
 * - `unknown-schema`: the fingerprint names no schema version in `schemas/`;
 * - `truncated`: the datum ends before the writer schema's reading is complete;
 * - `invalid`: bytes left over after the datum, or a value the writer schema does not allow.
 */
export type DecodeFailure = "not-avro" | "unknown-schema" | "truncated" | "invalid";

/**
 * The only error {@link SingleObjectCodec.decode} (and so `SchemaRegistry.decode`) throws. `kind` says which way
 * the body failed and `message` gives the precise reason, fit for a log line or a dead-letter header.
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

const MARKER_0 = 0xc3;
const MARKER_1 = 0x01;
const HEADER_LENGTH = 10;
/** Zero bytes appended to a body that reads past its end, to tell a truncated datum from an invalid one. */
const OVERRUN_PADDING = 65_536;
const INITIAL_SCRATCH_BYTES = 4_096;
/** A zig-zag varint of a 53-bit count takes at most 8 bytes; 10 covers any long. */
const MAX_VARINT_BYTES = 10;

/** Writes `n` (a non-negative safe integer) as an Avro long (zig-zag varint) at `offset`; returns the next offset. */
function writeZigZag(buf: Buffer, offset: number, n: number): number {
  let v = n * 2; // zig-zag of a non-negative number; arithmetic, not bitwise, so counts above 2^30 stay exact
  while (v >= 0x80) {
    buf[offset++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[offset++] = v;
  return offset;
}

type AvroResolver = ReturnType<avro.Type["createResolver"]>;

/** A schema whose data the codec reads: found by its fingerprint, resolved to the codec's own schema. */
export interface WriterSchema {
  /** CRC-64-AVRO fingerprint of its Parsing Canonical Form: 8 bytes, little-endian, as written on the wire. */
  readonly fingerprint: Buffer;
  /** How a {@link DecodeError} names a datum written with it, e.g. `reading of reading.v1.avsc (<16 hex>)`. */
  readonly label: string;
  /** Resolver from it (writer) to the codec's schema (reader); undefined when it is the codec's schema itself. */
  readonly resolver: AvroResolver | undefined;
}

interface Writer extends WriterSchema {
  /** The fingerprint as two little-endian 32-bit words, for a lookup that allocates nothing. */
  readonly lo: number;
  readonly hi: number;
}

/**
 * Encodes values of one Avro record schema as single-object messages, and decodes messages written with any of a
 * set of writer schemas into that schema. Build it once and share it: `encode` and `decode` do no schema work per
 * call. Not for concurrent use from several threads (it reuses scratch buffers).
 */
export class SingleObjectCodec<T extends object> {
  readonly #type: avro.Type;
  readonly #fingerprint: Buffer;
  readonly #fields: readonly string[];
  readonly #writers: readonly Writer[];
  #scratch: Buffer;
  #padded: Buffer = Buffer.alloc(0);

  /**
   * `type` is the record schema written by `encode` and read into by `decode`, `fingerprint` its 8-byte wire
   * fingerprint and `fields` its field names (a decoded value has exactly these, in this order). `writers` are the
   * schemas `decode` accepts, in the order to try them: the most frequent first.
   */
  constructor(
    type: avro.Type,
    fingerprint: Buffer,
    fields: readonly string[],
    writers: readonly WriterSchema[],
  ) {
    this.#type = type;
    this.#fingerprint = Buffer.from(fingerprint);
    this.#fields = fields;
    this.#writers = writers.map((w) => ({
      ...w,
      lo: w.fingerprint.readUInt32LE(0),
      hi: w.fingerprint.readUInt32LE(4),
    }));
    this.#scratch = this.#newScratch(INITIAL_SCRATCH_BYTES);
  }

  #newScratch(size: number): Buffer {
    const scratch = Buffer.allocUnsafe(size);
    scratch[0] = MARKER_0;
    scratch[1] = MARKER_1;
    this.#fingerprint.copy(scratch, 2);
    return scratch;
  }

  /**
   * The single-object encoding of `value`: `C3 01`, the 8-byte fingerprint, the Avro binary datum. The returned
   * Buffer is the caller's. Throws avsc's Error when `value` does not fit the schema.
   */
  encode(value: T): Buffer {
    let end = this.#type.encode(value, this.#scratch, HEADER_LENGTH);
    while (end < 0) {
      // The datum did not fit: `-end` bytes were missing. Grow the scratch buffer and write again.
      this.#scratch = this.#newScratch(2 * (this.#scratch.length - end));
      end = this.#type.encode(value, this.#scratch, HEADER_LENGTH);
    }
    const out = Buffer.allocUnsafe(end);
    this.#scratch.copy(out, 0, 0, end);
    return out;
  }

  /** The Avro binary datum of `value` alone, without the single-object header. The returned Buffer is the caller's. */
  encodeDatum(value: T): Buffer {
    const withHeader = this.encode(value);
    return withHeader.subarray(HEADER_LENGTH);
  }

  /** Whether `body` names one of this codec's writer schemas (cheap: reads the 8 fingerprint bytes only). */
  accepts(body: Buffer): boolean {
    if (body.length < HEADER_LENGTH || body[0] !== MARKER_0 || body[1] !== MARKER_1) return false;
    const lo = body.readUInt32LE(2);
    const hi = body.readUInt32LE(6);
    return this.#writers.some((w) => w.lo === lo && w.hi === hi);
  }

  /**
   * A message body of this codec's schema whose datum is an Avro array of already-encoded items, as the schema
   * `{"type":"record","fields":[{"type":{"type":"array","items":...}}]}` writes it: one block of `datums.length`
   * items, then the end-of-array zero. `bytes` is the sum of the datums' lengths.
   */
  frameArray(datums: readonly Buffer[], bytes: number): Buffer {
    const out = Buffer.allocUnsafe(HEADER_LENGTH + MAX_VARINT_BYTES + bytes + 1);
    out[0] = MARKER_0;
    out[1] = MARKER_1;
    this.#fingerprint.copy(out, 2);
    let offset = HEADER_LENGTH;
    // A block of n items, then the end-of-array zero; an empty array is the zero alone.
    if (datums.length > 0) offset = writeZigZag(out, offset, datums.length);
    for (const d of datums) offset += d.copy(out, offset);
    out[offset++] = 0;
    return out.subarray(0, offset);
  }

  /** A message body of this codec's schema around an already-encoded datum. */
  frame(datum: Buffer): Buffer {
    const out = Buffer.allocUnsafe(HEADER_LENGTH + datum.length);
    out[0] = MARKER_0;
    out[1] = MARKER_1;
    this.#fingerprint.copy(out, 2);
    datum.copy(out, HEADER_LENGTH);
    return out;
  }

  /**
   * The value in a message body, as a plain object with the codec schema's fields. Throws only
   * {@link DecodeError}: `not-avro` for a body shorter than 10 bytes or without `C3 01`; `unknown-schema` with the
   * message `unknown schema <16 hex digits as in the body>`; `truncated` when the datum ends early; `invalid` for
   * trailing bytes or values the writer schema does not allow.
   */
  decode(body: Buffer): T {
    try {
      return this.#decode(body);
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError("invalid", `body cannot be decoded: ${(err as Error)?.message ?? String(err)}`, {
        cause: err,
      });
    }
  }

  #decode(input: unknown): T {
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
    let writer: Writer | undefined;
    for (const w of this.#writers) {
      if (w.lo === lo && w.hi === hi) {
        writer = w;
        break;
      }
    }
    if (writer === undefined) {
      throw new DecodeError("unknown-schema", `unknown schema ${body.toString("hex", 2, HEADER_LENGTH)}`);
    }
    let decoded: { value: unknown; offset: number };
    try {
      decoded = this.#type.decode(body, HEADER_LENGTH, writer.resolver);
    } catch (err) {
      throw new DecodeError("invalid", `invalid ${writer.label}: ${(err as Error).message}`, { cause: err });
    }
    if (decoded.offset < 0) throw this.#overrun(body, writer);
    if (decoded.offset !== body.length) {
      throw new DecodeError(
        "invalid",
        `${body.length - decoded.offset} trailing bytes after the ${writer.label} (datum of ${decoded.offset - HEADER_LENGTH} bytes)`,
      );
    }
    const record = decoded.value as Record<string, unknown>;
    const value: Record<string, unknown> = {};
    for (const name of this.#fields) value[name] = record[name];
    return value as T;
  }

  /**
   * avsc reports both a datum that runs out of bytes and a negative length as "read past the end". Tell them apart
   * (cold path only): a truncated datum decodes once 64 KiB of zero bytes are appended; a negative length, or one
   * reaching even further past the end, does not.
   */
  #overrun(body: Buffer, writer: Writer): DecodeError {
    const datum = body.length - HEADER_LENGTH;
    const need = body.length + OVERRUN_PADDING;
    if (this.#padded.length < need) this.#padded = Buffer.alloc(need);
    const padded = this.#padded;
    body.copy(padded);
    try {
      if (this.#type.decode(padded, HEADER_LENGTH, writer.resolver).offset >= 0) {
        return new DecodeError("truncated", `truncated ${writer.label}: the datum ends after ${datum} bytes`);
      }
    } catch {
      // Not a prefix of any valid datum: report it as invalid below.
    } finally {
      padded.fill(0, 0, body.length); // all zeros again for the next use
    }
    return new DecodeError(
      "invalid",
      `invalid ${writer.label}: a length in the ${datum}-byte datum is negative or too large`,
    );
  }
}
