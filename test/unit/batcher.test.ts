import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Batcher } from "../../processor/batcher.js";

describe("batching deliveries into transactions", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a full batch is flushed at once, without waiting for the delay", () => {
    const batches: number[][] = [];
    const b = new Batcher<number>(3, 1_000, (items) => batches.push(items));
    for (let i = 0; i < 7; i++) b.add(i);
    expect(batches).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    expect(b.size).toBe(1);
  });

  it("a partial batch is flushed when its first item has waited the delay", () => {
    const batches: number[][] = [];
    const b = new Batcher<number>(100, 50, (items) => batches.push(items));
    b.add(1);
    vi.advanceTimersByTime(30);
    b.add(2);
    expect(batches).toEqual([]);
    vi.advanceTimersByTime(20);
    expect(batches).toEqual([[1, 2]]);
    b.add(3);
    vi.advanceTimersByTime(49);
    expect(batches).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(batches).toEqual([[1, 2], [3]]);
  });

  it("flushNow hands over what is collected and cancels the timer", () => {
    const batches: number[][] = [];
    const b = new Batcher<number>(100, 50, (items) => batches.push(items));
    b.flushNow();
    expect(batches).toEqual([]);
    b.add(1);
    b.flushNow();
    vi.advanceTimersByTime(100);
    expect(batches).toEqual([[1]]);
  });
});
