import { describe, expect, it } from "vitest";
import { InflightWindow } from "../../mqtt/window.js";
import { mulberry32 as prng } from "../../simulators/model.js";

/** A window over string items, recording what it asks of its connection; drains run when `runScheduled` says. */
function harness(limit: number, onDeliver?: (item: string, ack: () => void) => void) {
  const delivered: string[] = [];
  const acks = new Map<string, () => void>();
  const pubacks: number[] = [];
  const events: string[] = [];
  const scheduled: (() => void)[] = [];
  let maxInFlight = 0;
  const window: InflightWindow<string> = new InflightWindow<string>(
    limit,
    {
      deliver: (item, ack) => {
        delivered.push(item);
        acks.set(item, ack);
        maxInFlight = Math.max(maxInFlight, window.inFlight);
        onDeliver?.(item, ack);
      },
      puback: (messageId) => pubacks.push(messageId),
      pause: () => events.push("pause"),
      resume: () => events.push("resume"),
      overflow: () => events.push("overflow"),
    },
    (run) => scheduled.push(run),
  );
  return {
    window,
    delivered,
    pubacks,
    events,
    maxInFlight: () => maxInFlight,
    ack: (item: string) => acks.get(item)?.(),
    /** Runs the drains the window scheduled, as the next ticks would. */
    runScheduled: () => {
      while (scheduled.length > 0) scheduled.shift()?.();
    },
  };
}

/** Arrival `n` at QoS 1: item `m<n>` with packet id `n`. */
function arriveQos1(window: InflightWindow<string>, from: number, to: number): void {
  for (let n = from; n < to; n++) window.arrive(n, `m${n}`);
}

function names(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `m${from + i}`);
}

function ids(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

describe("InflightWindow", () => {
  it("hands messages on at once while there is room, and PUBACKs them in arrival order whatever the ack order", () => {
    const h = harness(10);
    arriveQos1(h.window, 1, 5);
    expect(h.delivered).toEqual(names(1, 5));
    h.ack("m3");
    h.ack("m2");
    expect(h.pubacks).toEqual([]);
    expect(h.window.unacked).toBe(4);
    h.ack("m1");
    expect(h.pubacks).toEqual([1, 2, 3]);
    h.ack("m4");
    expect(h.pubacks).toEqual([1, 2, 3, 4]);
    expect(h.window.unacked).toBe(0);
    expect(h.events).toEqual([]);
  });

  it("an ack called twice releases one PUBACK", () => {
    const h = harness(10);
    arriveQos1(h.window, 1, 3);
    h.ack("m1");
    h.ack("m1");
    expect(h.pubacks).toEqual([1]);
    expect(h.window.inFlight).toBe(1);
  });

  it("holds what the broker sends beyond the limit and hands it on in order as acks free room", () => {
    const h = harness(3);
    arriveQos1(h.window, 1, 7);
    expect(h.delivered).toEqual(names(1, 4));
    expect(h.window.inFlight).toBe(3);
    expect(h.window.heldCount).toBe(3);
    expect(h.window.unacked).toBe(6);
    expect(h.events).toEqual(["overflow", "pause"]);

    h.ack("m1");
    expect(h.pubacks).toEqual([1]);
    // Handing on waits for the scheduled drain, never from inside the ack call.
    expect(h.delivered).toEqual(names(1, 4));
    h.runScheduled();
    expect(h.delivered).toEqual(names(1, 5));
    expect(h.window.inFlight).toBe(3);

    for (const item of names(2, 5)) h.ack(item);
    h.runScheduled();
    expect(h.delivered).toEqual(names(1, 7));
    expect(h.window.heldCount).toBe(0);
    expect(h.events).toEqual(["overflow", "pause", "resume"]);
    expect(h.maxInFlight()).toBe(3);
  });

  it("pauses only once the held queue reaches the limit, and reports the overflow once per connection", () => {
    const h = harness(4);
    arriveQos1(h.window, 1, 8);
    expect(h.window.heldCount).toBe(3);
    expect(h.window.paused).toBe(false);
    expect(h.events).toEqual(["overflow"]);
    h.window.arrive(8, "m8");
    expect(h.window.paused).toBe(true);
    h.window.arrive(9, "m9");
    expect(h.events).toEqual(["overflow", "pause"]);
  });

  it("a QoS 0 message takes no room and needs no PUBACK, but waits behind held messages", () => {
    const h = harness(1);
    h.window.arrive(undefined, "q0-first");
    h.window.arrive(1, "m1");
    h.window.arrive(2, "m2");
    h.window.arrive(undefined, "q0-after-held");
    expect(h.delivered).toEqual(["q0-first", "m1"]);
    h.ack("q0-first");
    expect(h.pubacks).toEqual([]);
    expect(h.window.inFlight).toBe(1);

    h.ack("m1");
    h.runScheduled();
    expect(h.delivered).toEqual(["q0-first", "m1", "m2", "q0-after-held"]);
    h.ack("m2");
    expect(h.pubacks).toEqual([1, 2]);
    expect(h.window.unacked).toBe(0);
  });

  it("a handler that acks inside deliver gets the held messages in order, without re-entering itself", () => {
    let depth = 0;
    let maxDepth = 0;
    const h = harness(1, (item, ack) => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      if (item !== "m1") ack();
      depth--;
    });
    arriveQos1(h.window, 1, 5);
    expect(h.delivered).toEqual(["m1"]);
    h.ack("m1");
    h.runScheduled();
    expect(h.delivered).toEqual(names(1, 5));
    expect(h.pubacks).toEqual(ids(1, 5));
    expect(maxDepth).toBe(1);
    expect(h.window.unacked).toBe(0);
  });

  it("after close(), acks write no PUBACK, held messages are dropped, and nothing more is handed on", () => {
    const h = harness(2);
    arriveQos1(h.window, 1, 6);
    h.ack("m2");
    h.window.close();
    expect(h.window.unacked).toBe(0);
    h.ack("m1");
    h.window.arrive(6, "m6");
    h.runScheduled();
    expect(h.pubacks).toEqual([]);
    expect(h.delivered).toEqual(names(1, 3));
  });

  it("after stopIntake(), acks still release PUBACKs but nothing new or held is handed on", () => {
    const h = harness(2);
    arriveQos1(h.window, 1, 4);
    h.window.stopIntake();
    h.window.arrive(4, "m4");
    h.ack("m1");
    h.ack("m2");
    h.runScheduled();
    expect(h.pubacks).toEqual([1, 2]);
    expect(h.delivered).toEqual(names(1, 3));
    expect(h.window.heldCount).toBe(1);
  });

  it("keeps arrival order, the limit and PUBACK order over 200 random interleavings of arrivals, acks and drains", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const limit = 1 + Math.floor(random() * 5);
      const h = harness(limit);
      const total = 60;
      let arrived = 0;
      // A window that stops handing on would loop forever here: give up after far more steps than needed.
      for (let steps = 0; h.pubacks.length < total; steps++) {
        if (steps >= 100_000) expect.fail(`seed ${seed}: stuck with ${h.window.heldCount} held`);
        const step = random();
        const released = new Set(h.pubacks);
        const unackedDelivered = h.delivered.filter((item) => !released.has(Number(item.slice(1))));
        if (step < 0.4 && arrived < total) {
          arrived++;
          h.window.arrive(arrived, `m${arrived}`);
        } else if (step < 0.8 && unackedDelivered.length > 0) {
          h.ack(unackedDelivered[Math.floor(random() * unackedDelivered.length)] ?? "");
        } else {
          h.runScheduled();
        }
        if (h.window.inFlight > limit)
          expect.fail(`seed ${seed}: ${h.window.inFlight} in flight, limit ${limit}`);
        if (arrived === total && unackedDelivered.length === 0) h.runScheduled();
      }
      expect(h.delivered, `seed ${seed}`).toEqual(names(1, total + 1));
      expect(h.pubacks, `seed ${seed}`).toEqual(ids(1, total + 1));
      expect(h.window.unacked, `seed ${seed}`).toBe(0);
    }
  });
});
