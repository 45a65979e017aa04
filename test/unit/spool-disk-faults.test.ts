import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../common/log.js";
import { DiskFaults } from "../../spool/disk-faults.js";

const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("spool disk faults", () => {
  it("a failing operation never throws, is named with its error until it works again, and is retried after 1 s, 2 s, 4 s", () => {
    vi.useFakeTimers();
    vi.spyOn(Math, "random").mockReturnValue(1); // the top of the jitter: the delays are exactly the ceilings
    const retries: string[][] = [];
    const faults = new DiskFaults(silentLogger(), (failing) => retries.push([...failing]));
    expect(
      faults.run("seal", () => {
        throw enospc();
      }),
    ).toBe(false);
    expect(faults.reason).toBe(
      "spool disk error, PUBACKs held, retrying: seal: ENOSPC ENOSPC: no space left on device, write",
    );
    for (const delay of [1_000, 2_000, 4_000]) {
      vi.advanceTimersByTime(delay - 1);
      const before = retries.length;
      vi.advanceTimersByTime(1);
      expect(retries.length).toBe(before + 1);
      expect(retries.at(-1)).toEqual(["seal"]);
      faults.failed("seal", enospc());
    }
    expect(faults.run("seal", () => undefined)).toBe(true);
    expect(faults.reason).toBeUndefined();
    // Working again resets the backoff: the next failure is retried after 1 s. The pending retry still runs.
    vi.runOnlyPendingTimers();
    faults.failed(
      "delete",
      Object.assign(new Error("EACCES: permission denied, unlink"), { code: "EACCES" }),
    );
    vi.advanceTimersByTime(1_000);
    expect(retries.at(-1)).toEqual(["delete"]);
    faults.close();
  });
});
