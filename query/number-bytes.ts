/**
 * Numbers written as text straight into bytes, as `String(v)` writes them, for exports that write millions of
 * rows: `String` costs about 0.1 µs a number and a string each, most of the time of a row; these write the common
 * cases (integers such as times and sequence numbers, values of at most two decimals) digit by digit and leave
 * any other number to `String`.
 */

/** Bytes `String(v)` takes at most for any number (`-1.7976931348623157e+308`, `-0.000001234567890123456`). */
export const MAX_NUMBER_BYTES = 25;

const ZERO = 48;
const MINUS = 45;
const POINT = 46;

/** The two digits of 0 to 99 at 2i and 2i+1: two digits per division, half the divisions of one at a time. */
const PAIRS = Uint8Array.from({ length: 200 }, (_, i) =>
  i % 2 === 0 ? ZERO + Math.floor(i / 20) : ZERO + (Math.floor(i / 2) % 10),
);

/** Writes the digits of an integer `0 <= n < 1e8` at `p`; returns where they end. */
function writeSmall(b: Uint8Array, p: number, n: number): number {
  const len =
    n < 10 ? 1 : n < 100 ? 2 : n < 1e3 ? 3 : n < 1e4 ? 4 : n < 1e5 ? 5 : n < 1e6 ? 6 : n < 1e7 ? 7 : 8;
  let x = n;
  let i = p + len;
  while (x >= 100) {
    const q = (x / 100) | 0;
    const r = 2 * (x - q * 100);
    b[--i] = PAIRS[r + 1] as number;
    b[--i] = PAIRS[r] as number;
    x = q;
  }
  if (x >= 10) {
    b[--i] = PAIRS[2 * x + 1] as number;
    b[--i] = PAIRS[2 * x] as number;
  } else b[--i] = ZERO + x;
  return p + len;
}

/** Writes an integer `0 <= n < 1e15` at `p`; returns where it ends. */
function writeInteger(b: Uint8Array, p: number, n: number): number {
  if (n < 1e8) return writeSmall(b, p, n);
  // Below 1e15 the quotient is below 1e7, where a double resolves far finer than the 1e-8 that separates an
  // integer quotient from the next, so floor() is exact; the remainder is then exact too.
  const hi = Math.floor(n / 1e8);
  let x = n - hi * 1e8;
  const at = writeSmall(b, p, hi);
  // The low eight digits, zeros included, two at a time.
  for (let i = at + 6; i >= at; i -= 2) {
    const q = (x / 100) | 0;
    const r = 2 * (x - q * 100);
    b[i] = PAIRS[r] as number;
    b[i + 1] = PAIRS[r + 1] as number;
    x = q;
  }
  return at + 8;
}

/** Writes `text` (ASCII, as a number's text is) at `p`; returns where it ends. */
function writeAscii(b: Uint8Array, p: number, text: string): number {
  for (let i = 0; i < text.length; i++) b[p + i] = text.charCodeAt(i);
  return p + text.length;
}

/**
 * Writes `String(v)` at `p` in `b`, which has room for {@link MAX_NUMBER_BYTES} there; returns where it ends.
 * Byte for byte what `String` writes: an integer below 1e15 in magnitude has no other text than its digits (and
 * `-0` is "0"); a value equal to `c / 100` for an integer `c` below 2^31 in magnitude is written as that decimal
 * without trailing zeros, which is the shortest text that reads back as `v` (`String`'s choice): any shorter
 * decimal lies at least 0.01 from it, while doubles below 2^31 / 100 are far closer together than that.
 */
export function writeNumber(b: Uint8Array, p: number, v: number): number {
  if (Number.isInteger(v)) {
    if (v >= 0 && v < 1e15) return writeInteger(b, p, v);
    if (v < 0 && v > -1e15) {
      b[p] = MINUS;
      return writeInteger(b, p + 1, -v);
    }
    return writeAscii(b, p, String(v));
  }
  const c = Math.round(v * 100);
  if (c / 100 !== v || c >= 2_147_483_648 || c <= -2_147_483_648) return writeAscii(b, p, String(v));
  let a = c;
  let at = p;
  if (a < 0) {
    b[at++] = MINUS;
    a = -a;
  }
  const whole = (a / 100) | 0;
  const cents = a - whole * 100;
  at = writeSmall(b, at, whole);
  // Not an integer, so cents is not 0.
  b[at++] = POINT;
  const tenths = (cents / 10) | 0;
  b[at++] = ZERO + tenths;
  if (cents !== tenths * 10) b[at++] = ZERO + cents - tenths * 10;
  return at;
}
