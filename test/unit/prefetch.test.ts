import { describe, expect, it } from "vitest";
import { PrefetchWindow } from "../../processor/prefetch.js";

/** The window after feeding `n` messages of `readings` each: the last change asked for, or the start. */
function after(w: PrefetchWindow, n: number, readings: number): number {
  let last = w.initial;
  for (let i = 0; i < n; i++) last = w.observe(readings) ?? last;
  return last;
}

describe("the processor's prefetch window follows the readings per message", () => {
  it("starts small, so a backlog of batch messages is not all sent ahead before the window knows their size", () => {
    expect(new PrefetchWindow(2_000).initial).toBe(16);
    expect(new PrefetchWindow(8).initial).toBe(8);
  });

  it("the first message sets the window whatever the hysteresis: PREFETCH 20 and single readings hold 20", () => {
    const w = new PrefetchWindow(20);
    expect(w.initial).toBe(16);
    expect(w.observe(1)).toBe(20);
  });

  it("single-reading messages open it to PREFETCH messages at the first message, and it stays there", () => {
    const w = new PrefetchWindow(2_000);
    expect(w.observe(1)).toBe(2_000);
    for (let i = 0; i < 1_000; i++) expect(w.observe(1)).toBeUndefined();
  });

  it("batches of 500 readings keep it at 4 messages at once; batches of 50 bring it near PREFETCH readings", () => {
    const w = new PrefetchWindow(2_000);
    expect(w.observe(500)).toBe(4);
    for (let i = 0; i < 1_000; i++) expect(w.observe(500)).toBeUndefined();
    const held = after(new PrefetchWindow(2_000), 1_000, 50) * 50;
    expect(held).toBeGreaterThanOrEqual(1_500);
    expect(held).toBeLessThanOrEqual(2_500);
  });

  it("changes are asked for only past the hysteresis, and it grows back when messages get small again", () => {
    const w = new PrefetchWindow(2_000);
    const changes: number[] = [];
    for (const readings of [...Array(500).fill(100), ...Array(500).fill(1)] as number[]) {
      const c = w.observe(readings);
      if (c !== undefined) changes.push(c);
    }
    expect(changes.length).toBeLessThan(20);
    // Back to PREFETCH messages within the hysteresis.
    expect(changes.at(-1)).toBeGreaterThanOrEqual(1_500);
  });
});
