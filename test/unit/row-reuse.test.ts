import { describe, expect, it } from "vitest";
import { RowMemo } from "../../query/row-reuse.js";
import { mulberry32 as prng } from "../../simulators/model.js";

/**
 * A small renderer over RowMemo: a row is `key:a|b;` of its numbers (String tells -0 from 0 only through 1/x,
 * so -0 prints "-0"). Returns the text and which rows were kept rather than written.
 */
function render(memo: RowMemo, key: number[], nums: number[][], tag = 0, base = 3) {
  const out = Buffer.alloc(base + 64 * key.length);
  out.write("hd:", 0, "latin1");
  const reuse = memo.begin(out, base, key.length, tag);
  const kept: number[] = [];
  let p = base;
  key.forEach((k, i) => {
    const row = nums[i] as number[];
    row.forEach((v, j) => {
      reuse.numbers[i * memo.width + j] = v;
    });
    const end = reuse.row(i, k, p);
    if (end >= 0) {
      kept.push(i);
      p = end;
      return;
    }
    const show = (v: number) => (Object.is(v, -0) ? "-0" : String(v));
    p += out.write(`${k}:${row.map(show).join("|")};`, p, "latin1");
  });
  reuse.end(p);
  return { text: out.toString("latin1", 0, p), kept };
}

const fresh = (key: number[], nums: number[][], tag = 0) => render(new RowMemo(2), key, nums, tag).text;

describe("rows kept from the last rendering", () => {
  it("copies exactly the rows whose key and numbers are the same, -0 and NaN included", () => {
    const memo = new RowMemo(2);
    const key = [1, 1, 2, 2, 3];
    const nums = [
      [1, 2],
      [0, Number.NaN],
      [3, 4],
      [5, 6],
      [7, 8],
    ];
    expect(render(memo, key, nums).kept).toEqual([]);
    const again = render(memo, key, nums);
    expect(again.kept).toEqual([0, 1, 2, 3, 4]);
    expect(again.text).toBe(fresh(key, nums));
    // -0 is not 0, a key changes, NaN stays NaN, the page grows by a row.
    const nums2 = [
      [1, 2],
      [-0, Number.NaN],
      [3, 4],
      [5, 6.5],
      [7, 8],
      [9, 9],
    ];
    const key2 = [1, 1, 9, 2, 3, 3];
    const third = render(memo, key2, nums2);
    expect(third.kept).toEqual([0, 4]);
    expect(third.text).toBe(fresh(key2, nums2));
    // Shorter again; then another tag keeps nothing.
    expect(render(memo, key2.slice(0, 3), nums2.slice(0, 3)).kept).toEqual([0, 1, 2]);
    expect(render(memo, key2.slice(0, 3), nums2.slice(0, 3), 1).kept).toEqual([]);
  });

  it("prints what a fresh rendering prints, over random rounds of changes", () => {
    const random = prng(7);
    const pool = [0, -0, 1, -1, 0.5, Number.NaN, 1e21, 5e-324, 42];
    const pick = () => pool[Math.floor(random() * pool.length)] as number;
    const memo = new RowMemo(2);
    let n = 50;
    let key = Array.from({ length: n }, () => Math.floor(random() * 3));
    let nums = Array.from({ length: n }, () => [pick(), pick()]);
    let keptInAll = 0;
    for (let round = 0; round < 200; round++) {
      const tag = random() < 0.1 ? 1 : 0;
      const got = render(memo, key, nums, tag);
      expect(got.text, `round ${round}`).toBe(fresh(key, nums, tag));
      keptInAll += got.kept.length;
      if (random() < 0.2) n = Math.max(0, n + Math.floor(random() * 11) - 5);
      key = Array.from({ length: n }, (_, i) => (random() < 0.05 ? Math.floor(random() * 3) : (key[i] ?? 0)));
      nums = Array.from({ length: n }, (_, i) =>
        [0, 1].map((j) => (random() < 0.05 || nums[i] === undefined ? pick() : (nums[i]?.[j] as number))),
      );
    }
    // Most rows are kept round after round: the test exercises the copies, not only the writes.
    expect(keptInAll).toBeGreaterThan(200 * 30);
  });
});
