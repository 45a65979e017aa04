import { describe, expect, it } from "vitest";
import { PrefetchWindow } from "../../processor/prefetch.js";

describe("the processor's prefetch window follows the readings per message", () => {
  it("single-reading messages keep the window at PREFETCH messages", () => {
    const w = new PrefetchWindow(2_000);
    for (let i = 0; i < 1_000; i++) expect(w.observe(1)).toBeUndefined();
  });

  it("batches of 500 readings shrink it to about PREFETCH readings, never below 4 messages", () => {
    const w = new PrefetchWindow(2_000);
    let last = 2_000;
    for (let i = 0; i < 1_000; i++) last = w.observe(500) ?? last;
    expect(last).toBe(4);
    const w2 = new PrefetchWindow(2_000);
    let last2 = 2_000;
    for (let i = 0; i < 1_000; i++) last2 = w2.observe(50) ?? last2;
    expect(last2 * 50).toBeGreaterThanOrEqual(1_500);
    expect(last2 * 50).toBeLessThanOrEqual(2_500);
  });

  it("changes are asked for only past the hysteresis, and it grows back when messages get small again", () => {
    const w = new PrefetchWindow(2_000);
    const changes: number[] = [];
    for (let i = 0; i < 500; i++) {
      const c = w.observe(100);
      if (c !== undefined) changes.push(c);
    }
    expect(changes.length).toBeLessThan(20);
    for (let i = 0; i < 500; i++) {
      const c = w.observe(1);
      if (c !== undefined) changes.push(c);
    }
    // Back to PREFETCH messages within the hysteresis.
    expect(changes.at(-1)).toBeGreaterThanOrEqual(1_500);
  });
});
