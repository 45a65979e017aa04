/** A long type for avsc that is exact for every safe integer, where avsc's own is not. */
import avro from "avsc";
import { isObject } from "./json.js";

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

/**
 * avsc type hook (`Type.forSchema`'s `typeHook` option): every `long`, also `{"type":"long","logicalType":...}`,
 * becomes a long exact for every safe integer that refuses on read any value beyond ±(2^53-1).
 */
export function longHook(schema: unknown): avro.Type | undefined {
  return schema === "long" || (isObject(schema) && schema.type === "long") ? new SafeLongType() : undefined;
}
