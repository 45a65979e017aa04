import { describe, expect, it } from "vitest";
import { AnswerCache, ENTRY_BYTES } from "../../serve/answer-cache.js";

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

describe("serve's answer cache", () => {
  it("holds at most its size in bytes, letting the least recently used answers go first", () => {
    const cache = new AnswerCache(1_000);
    cache.set("a", bytes(100, 1));
    cache.set("b", bytes(100, 2));
    cache.set("c", bytes(100, 3));
    expect(cache.get("a")?.[0]).toBe(1); // a is now the most recently used
    for (let i = 0; i < 9; i++) cache.set(`x${i}`, bytes(100));
    expect(cache.bytes).toBeLessThanOrEqual(1_000);
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("c")).toBeUndefined();
    expect(cache.get("a")?.[0]).toBe(1);
  });

  it("sends but never keeps an answer larger than an eighth of the default size, or than the whole", () => {
    const big = new AnswerCache();
    big.set("export", bytes(ENTRY_BYTES + 1));
    expect(big.get("export")).toBeUndefined();
    const small = new AnswerCache(10);
    small.set("k", bytes(11));
    expect(small.bytes).toBe(0);
  });

  it("tags the same key alike and different keys differently", () => {
    expect(AnswerCache.etag('{"kind":"latest"}\njson\n7')).toBe(
      AnswerCache.etag('{"kind":"latest"}\njson\n7'),
    );
    expect(AnswerCache.etag('{"kind":"latest"}\njson\n7')).not.toBe(
      AnswerCache.etag('{"kind":"latest"}\njson\n8'),
    );
  });
});
