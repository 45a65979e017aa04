import { describe, expect, it } from "vitest";
import { Fifo } from "../../spool/fifo.js";

describe("spool append queue (Fifo)", () => {
  it("hands items out in the order they came, across compactions, and puts a taken group back in front", () => {
    const q = new Fifo<number>();
    for (let i = 0; i < 5_000; i++) q.push(i);
    const out: number[] = [];
    for (let i = 0; i < 3_000; i++) out.push(q.shift()!);
    expect(out).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
    expect(q.length).toBe(2_000);
    expect(q.peek()).toBe(3_000);
    q.unshift([2_998, 2_999]);
    q.push(5_000);
    const rest: number[] = [];
    while (q.length > 0) rest.push(q.shift()!);
    expect(rest).toEqual(Array.from({ length: 2_003 }, (_, i) => 2_998 + i));
    expect(q.shift()).toBeUndefined();
    q.push(7);
    q.clear();
    expect(q.length).toBe(0);
    expect(q.peek()).toBeUndefined();
  });

  it("takes 100,000 items out one by one in linear time", () => {
    const q = new Fifo<number>();
    for (let i = 0; i < 100_000; i++) q.push(i);
    const t = performance.now();
    let sum = 0;
    while (q.length > 0) sum += q.shift()!;
    expect(sum).toBe((100_000 * 99_999) / 2);
    // Array.prototype.shift takes seconds here; the queue takes a few ms (generous bound for a loaded machine).
    expect(performance.now() - t).toBeLessThan(1_000);
  });
});
