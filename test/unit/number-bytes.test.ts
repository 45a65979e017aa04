import { describe, expect, it } from "vitest";
import { MAX_NUMBER_BYTES, writeNumber } from "../../query/number-bytes.js";
import { mulberry32 as random } from "../../simulators/model.js";

const bytes = new Uint8Array(MAX_NUMBER_BYTES + 8);
const text = (v: number) => Buffer.from(bytes.subarray(0, writeNumber(bytes, 0, v))).toString("latin1");

describe("numbers written as bytes", () => {
  it("are what String writes, for the cases written digit by digit and for every other", () => {
    const edges = [
      0,
      -0,
      1,
      -1,
      9,
      10,
      99,
      100,
      1e7 - 1,
      1e7,
      1e8 - 1,
      1e8,
      1e8 + 1,
      123_456_789_012,
      1_793_499_840_784,
      1e15 - 1,
      1e15,
      -(1e15 - 1),
      -1e15,
      2 ** 53,
      -(2 ** 53),
      1e21,
      1e-7,
      -1e-7,
      5e-324,
      Number.MAX_VALUE,
      -Number.MAX_VALUE,
      0.1,
      0.01,
      0.05,
      -0.05,
      0.5,
      -0.5,
      1.1,
      0.1 + 0.2,
      776.76,
      -273.15,
      21_474_836.47,
      21_474_836.48,
      -21_474_836.47,
      -21_474_836.48,
      21_474_836.475,
      1.005,
      2.675,
      1e-3,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.EPSILON,
      2 ** 31,
      -(2 ** 31),
    ];
    for (const v of edges) expect(text(v), String(v)).toBe(String(v));
    const rnd = random(7);
    for (let i = 0; i < 200_000; i++) {
      const scale = 10 ** Math.floor(rnd() * 16 - 4);
      const v =
        i % 4 === 0
          ? Math.round((rnd() * 2 - 1) * scale * 100) / 100
          : i % 4 === 1
            ? Math.round((rnd() * 2 - 1) * scale)
            : i % 4 === 2
              ? (rnd() * 2 - 1) * scale
              : new Float64Array(
                  new Uint32Array([(rnd() * 2 ** 32) >>> 0, (rnd() * 2 ** 32) >>> 0]).buffer,
                )[0];
      if (v === undefined) continue;
      const got = text(v);
      if (got !== String(v)) expect(got, `${v}`).toBe(String(v));
    }
  });
});
