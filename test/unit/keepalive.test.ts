import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Keepalive } from "../../mqtt/keepalive.js";

const KEEPALIVE_S = 10;
const INTERVAL_MS = KEEPALIVE_S * 1_000;

/** A keepalive on fake timers whose broker answers each PINGREQ at once while `answering` is true. */
function harness(seconds = KEEPALIVE_S) {
  const state = { pings: 0, answering: true, dead: [] as Error[] };
  const keepalive: Keepalive = new Keepalive(seconds, {
    ping: () => {
      state.pings++;
      if (state.answering) keepalive.heard();
    },
    dead: (err) => state.dead.push(err),
  });
  return { keepalive, state };
}

describe("Keepalive", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a PINGREQ every half interval and never gives up on a broker that answers", () => {
    const { keepalive, state } = harness();
    keepalive.start();
    vi.advanceTimersByTime(10 * INTERVAL_MS);
    expect(state.pings).toBe(20);
    expect(state.dead).toEqual([]);
    keepalive.stop();
  });

  it("gives up one interval after the broker went silent, naming the keepalive", () => {
    const { keepalive, state } = harness();
    keepalive.start();
    vi.advanceTimersByTime(2 * INTERVAL_MS);
    // Fault: the broker stops answering (hung), just after it answered the last PINGREQ.
    state.answering = false;
    const silentFrom = Date.now();
    vi.advanceTimersByTime(INTERVAL_MS - 1);
    expect(state.dead).toEqual([]);
    // The deadline, then the check after that loop turn's I/O (a fake setImmediate runs 1 ms later).
    vi.advanceTimersByTime(2);
    expect(state.dead).toHaveLength(1);
    expect(Date.now() - silentFrom).toBe(INTERVAL_MS + 1);
    expect(state.dead[0]?.message).toBe(
      "no PINGRESP within 10 s (keepalive): nothing from the broker for 10.0 s",
    );
    const pings = state.pings;
    vi.advanceTimersByTime(10 * INTERVAL_MS);
    expect(state.pings).toBe(pings);
    expect(state.dead).toHaveLength(1);
  });

  it("counts silence from the last packet of any kind, not from the last PINGRESP", () => {
    const { keepalive, state } = harness();
    state.answering = false;
    keepalive.start();
    // PUBLISH packets keep coming although PINGRESPs do not.
    for (let i = 0; i < 30; i++) {
      vi.advanceTimersByTime(INTERVAL_MS / 3);
      keepalive.heard();
    }
    expect(state.dead).toEqual([]);
    vi.advanceTimersByTime(INTERVAL_MS + 1);
    expect(state.dead).toHaveLength(1);
  });

  it("does not give up when the broker's packet was waiting unread while the event loop was late", () => {
    const { keepalive, state } = harness();
    state.answering = false;
    keepalive.start();
    vi.advanceTimersByTime(INTERVAL_MS);
    // The deadline timer ran first; the socket read of the same loop turn brings a packet.
    keepalive.heard();
    vi.advanceTimersByTime(1);
    expect(state.dead).toEqual([]);
    vi.advanceTimersByTime(INTERVAL_MS);
    expect(state.dead).toHaveLength(1);
  });

  it("does not judge a broker while the socket is paused, and restarts the clock on resume", () => {
    const { keepalive, state } = harness();
    state.answering = false;
    keepalive.start();
    keepalive.setPaused(true);
    vi.advanceTimersByTime(5 * INTERVAL_MS);
    expect(state.dead).toEqual([]);
    // Still pinging, so the broker hears from us while we hold its packets unread.
    expect(state.pings).toBe(10);
    keepalive.setPaused(false);
    vi.advanceTimersByTime(INTERVAL_MS - 1);
    expect(state.dead).toEqual([]);
    vi.advanceTimersByTime(2);
    expect(state.dead).toHaveLength(1);
  });

  it("does nothing with a keepalive of 0, and nothing after stop()", () => {
    const off = harness(0);
    off.state.answering = false;
    off.keepalive.start();
    vi.advanceTimersByTime(100 * INTERVAL_MS);
    expect(off.state).toMatchObject({ pings: 0, dead: [] });

    const stopped = harness();
    stopped.state.answering = false;
    stopped.keepalive.start();
    stopped.keepalive.stop();
    vi.advanceTimersByTime(100 * INTERVAL_MS);
    expect(stopped.state).toMatchObject({ pings: 0, dead: [] });
  });
});
