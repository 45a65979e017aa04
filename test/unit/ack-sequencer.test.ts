import { describe, expect, it } from "vitest";
import { AckSequencer } from "../../mqtt/ack-sequencer.js";
import { mulberry32 as prng } from "../../simulators/model.js";

function recording(): { released: number[]; sequencer: AckSequencer<number> } {
  const released: number[] = [];
  return { released, sequencer: new AckSequencer<number>((item) => released.push(item)) };
}

function shuffle<T>(values: T[], random: () => number): T[] {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [values[i], values[j]] = [values[j] as T, values[i] as T];
  }
  return values;
}

describe("AckSequencer", () => {
  it("releases in arrival order when completions come out of order", () => {
    const { released, sequencer } = recording();
    const done = [1, 2, 3, 4].map((n) => sequencer.push(n));
    done[2]?.();
    done[1]?.();
    expect(released).toEqual([]);
    expect(sequencer.pending).toBe(4);
    done[0]?.();
    expect(released).toEqual([1, 2, 3]);
    expect(sequencer.pending).toBe(1);
    done[3]?.();
    expect(released).toEqual([1, 2, 3, 4]);
    expect(sequencer.pending).toBe(0);
  });

  it("releases an item as soon as it is done when nothing earlier is pending", () => {
    const { released, sequencer } = recording();
    sequencer.push(1)();
    expect(released).toEqual([1]);
    sequencer.push(2)();
    expect(released).toEqual([1, 2]);
  });

  it("ignores a second done call for the same item, before and after its release", () => {
    const { released, sequencer } = recording();
    const first = sequencer.push(1);
    const second = sequencer.push(2);
    second();
    second();
    expect(released).toEqual([]);
    first();
    first();
    second();
    expect(released).toEqual([1, 2]);
    expect(sequencer.pending).toBe(0);
  });

  it("drops everything pending on clear without releasing it", () => {
    const { released, sequencer } = recording();
    const first = sequencer.push(1);
    sequencer.push(2)();
    sequencer.push(3);
    expect(sequencer.pending).toBe(3);
    sequencer.clear();
    expect(sequencer.pending).toBe(0);
    first();
    expect(released).toEqual([]);
  });

  it("a done function from before clear() does nothing afterwards, even to items pushed since", () => {
    const { released, sequencer } = recording();
    const stale = [sequencer.push(1), sequencer.push(2)];
    sequencer.clear();
    const fresh = sequencer.push(3);
    for (const done of stale) done();
    expect(released).toEqual([]);
    expect(sequencer.pending).toBe(1);
    fresh();
    expect(released).toEqual([3]);
  });

  it("a release callback that completes another item does not reorder releases", () => {
    const released: number[] = [];
    const done = new Map<number, () => void>();
    const sequencer = new AckSequencer<number>((item) => {
      released.push(item);
      if (item === 1) done.get(2)?.();
    });
    for (const n of [1, 2, 3]) done.set(n, sequencer.push(n));
    done.get(3)?.();
    done.get(1)?.();
    expect(released).toEqual([1, 2, 3]);
  });

  it("releases 100,000 items in arrival order for a random completion order, with arrivals interleaved", () => {
    const random = prng(20_240_601);
    const count = 100_000;
    const { released, sequencer } = recording();
    const done: (() => void)[] = [];
    const order = shuffle(
      Array.from({ length: count }, (_, i) => i),
      random,
    );
    let next = 0;
    let pendingMismatches = 0;
    for (const index of order) {
      // Push up to (and a little past) the item about to complete, as a live window would.
      while (next <= index || (next < count && random() < 0.3)) {
        done.push(sequencer.push(next));
        next++;
      }
      done[index]?.();
      if (sequencer.pending !== next - released.length) pendingMismatches++;
    }
    expect(pendingMismatches).toBe(0);
    expect(released).toHaveLength(count);
    expect(released.every((item, i) => item === i)).toBe(true);
    expect(sequencer.pending).toBe(0);
  });

  it("keeps order across buffer growth with a sliding window of pending items", () => {
    const random = prng(7);
    const { released, sequencer } = recording();
    const window: (() => void)[] = [];
    for (let i = 0; i < 50_000; i++) {
      window.push(sequencer.push(i));
      if (window.length > 500) {
        const j = Math.floor(random() * window.length);
        const [done] = window.splice(j, 1);
        done?.();
      }
    }
    for (const done of shuffle(window, random)) done();
    expect(released).toHaveLength(50_000);
    expect(released.every((item, i) => item === i)).toBe(true);
  });
});
