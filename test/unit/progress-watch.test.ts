import { describe, expect, it } from "vitest";
import { ProgressWatch } from "../../common/progress-watch.js";

describe("telling a stalled service from an idle one", () => {
  it("an idle service is never stalled, however long it idles", () => {
    let t = 0;
    const w = new ProgressWatch(1_000, () => t);
    t = 60_000;
    expect(w.stalledFor(false)).toBeUndefined();
  });

  it("work waiting with no progress for longer than the limit is a stall", () => {
    let t = 0;
    const w = new ProgressWatch(1_000, () => t);
    t = 1_000;
    expect(w.stalledFor(true)).toBeUndefined();
    t = 1_001;
    expect(w.stalledFor(true)).toBe(1_001);
  });

  it("progress restarts the clock", () => {
    let t = 0;
    const w = new ProgressWatch(1_000, () => t);
    t = 900;
    w.touch();
    t = 1_800;
    expect(w.stalledFor(true)).toBeUndefined();
    t = 2_000;
    expect(w.stalledFor(true)).toBe(1_100);
  });
});
