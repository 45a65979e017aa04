import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isSilent, silenceClock } from "../../query/silent.js";
import type { Reading } from "../../schemas/index.js";
import { mulberry32 as random } from "../../simulators/model.js";
import { pageRange } from "../../store/queries.js";
import { SqliteStore } from "../../store/sqlite.js";
import { nextInterval, readRollup } from "../../store/sqlite-rollup.js";

const MIN = 60_000;

describe("the silence rule", () => {
  it("is silent after more than three intervals and more than SILENT_MIN, whichever is longer", () => {
    const d = { last_seen: 1_000_000, interval_ms: 30_000 };
    expect(isSilent(d, 1_000_000 + 90_000, MIN)).toBe(false); // exactly three intervals
    expect(isSilent(d, 1_000_000 + 90_001, MIN)).toBe(true);
    const fast = { last_seen: 1_000_000, interval_ms: 1_000 };
    expect(isSilent(fast, 1_000_000 + 59_000, MIN)).toBe(false); // three intervals passed, SILENT_MIN not yet
    expect(isSilent(fast, 1_000_000 + MIN + 1, MIN)).toBe(true);
    const once = { last_seen: 1_000_000, interval_ms: null };
    expect(isSilent(once, 1_000_000 + MIN, MIN)).toBe(false);
    expect(isSilent(once, 1_000_000 + MIN + 1, MIN)).toBe(true);
  });

  it("serve judges silence at a clock that steps every tenth of SILENT_MIN, never ahead of now", () => {
    expect(silenceClock(1_234_567, MIN)).toBe(1_230_000);
    expect(silenceClock(1_230_000, MIN)).toBe(1_230_000);
    expect(silenceClock(1_234_567, 5)).toBe(1_234_567);
  });
});

describe("a page's range of device ids", () => {
  it("starts after `after` or at the prefix, whichever is later, and ends where the prefix does", () => {
    expect(pageRange({})).toEqual({ from: "", fromExclusive: false });
    expect(pageRange({ after: "b" })).toEqual({ from: "b", fromExclusive: true });
    expect(pageRange({ match: "dev-1" })).toEqual({ from: "dev-1", fromExclusive: false, to: "dev-2" });
    expect(pageRange({ match: "dev-1", after: "dev-0999" })).toEqual({
      from: "dev-1",
      fromExclusive: false,
      to: "dev-2",
    });
    expect(pageRange({ match: "dev-1", after: "dev-15" })).toEqual({
      from: "dev-15",
      fromExclusive: true,
      to: "dev-2",
    });
  });
});

describe("the interval a series learns", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("is the weighted mean of the gaps between receive times, ignoring gaps of 0 and readings received late", () => {
    let interval = 0;
    let seen = 0;
    for (const at of [1_000, 11_000, 11_000, 21_000, 15_000, 81_000]) {
      interval = nextInterval(interval, seen === 0 ? at : seen, at);
      seen = Math.max(seen, at);
    }
    // Gaps 10 s, 10 s, then 60 s weighing a quarter: 10 + (60 - 10) / 4.
    expect(interval).toBe(22_500);
  });

  it("keeps last_seen at the latest receive time of each series, whatever the order, resends and conflicts", () => {
    const dir = mkdtempSync(join(tmpdir(), "silent-unit-"));
    dirs.push(dir);
    const store = new SqliteStore(join(dir, "t.db"));
    const rnd = random(27);
    const stored = new Map<string, Reading>();
    for (let b = 0; b < 30; b++) {
      const batch: Reading[] = [];
      for (let i = 0; i < 100; i++) {
        const r: Reading = {
          device_id: `d${Math.floor(rnd() * 5)}`,
          sensor: `s${Math.floor(rnd() * 3)}`,
          ts: Math.floor(rnd() * 1_000) * 1_000,
          value: Math.floor(rnd() * 4),
          unit: null,
          seq: null,
          gateway_id: "gw",
          received_at: 1_700_000_000_000 + Math.floor(rnd() * 10_000_000),
        };
        batch.push(r);
        const key = `${r.device_id}/${r.sensor}/${r.ts}`;
        if (!stored.has(key)) stored.set(key, r);
      }
      store.writeBatch(batch);
    }
    const expected = new Map<string, number>();
    for (const r of stored.values()) {
      const key = `${r.device_id}/${r.sensor}`;
      expected.set(key, Math.max(expected.get(key) ?? 0, r.received_at));
    }
    const rolled = readRollup(store.db);
    expect(new Map(rolled.map((s) => [`${s.device_id}/${s.sensor}`, s.last_seen]))).toEqual(expected);
    for (const s of rolled) expect(s.interval).toBeGreaterThan(0);
    store.close();
  });
});
