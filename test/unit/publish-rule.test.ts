import { describe, expect, it } from "vitest";
import { publishNow, type Waiting } from "../../amqp/batching.js";

const POLICY = { maxReadings: 500, maxBytes: 262_144, window: 8 };
const waiting = (w: Partial<Waiting>): Waiting => ({
  unconfirmed: 0,
  pending: 1,
  pendingBytes: 31,
  headAlone: false,
  ...w,
});

describe("when the gateway publishes the next message", () => {
  it("a lone reading goes at once when nothing awaits its confirm", () => {
    expect(publishNow(waiting({}), POLICY, POLICY.window)).toBe(true);
    expect(publishNow(waiting({ pending: 120, pendingBytes: 3_720 }), POLICY, POLICY.window)).toBe(true);
  });

  it("nothing waiting: nothing to publish", () => {
    expect(publishNow(waiting({ pending: 0, pendingBytes: 0 }), POLICY, POLICY.window)).toBe(false);
  });

  it("while a message awaits its confirm, a partial batch waits for it and gathers what arrives", () => {
    expect(publishNow(waiting({ unconfirmed: 1 }), POLICY, POLICY.window)).toBe(false);
    expect(publishNow(waiting({ unconfirmed: 1, pending: 499 }), POLICY, POLICY.window)).toBe(false);
  });

  it("under load the window grows: a full batch (readings or bytes) goes while others await their confirm", () => {
    expect(publishNow(waiting({ unconfirmed: 1, pending: 500 }), POLICY, POLICY.window)).toBe(true);
    expect(publishNow(waiting({ unconfirmed: 7, pending: 2_000 }), POLICY, POLICY.window)).toBe(true);
    expect(publishNow(waiting({ unconfirmed: 3, pendingBytes: 262_144 }), POLICY, POLICY.window)).toBe(true);
  });

  it("never beyond the window, however much waits", () => {
    expect(publishNow(waiting({ unconfirmed: 8, pending: 5_000 }), POLICY, POLICY.window)).toBe(false);
  });

  it("a refused payload at the head goes alone as soon as the window has room", () => {
    expect(publishNow(waiting({ unconfirmed: 2, headAlone: true }), POLICY, POLICY.window)).toBe(true);
    expect(publishNow(waiting({ unconfirmed: 8, headAlone: true }), POLICY, POLICY.window)).toBe(false);
  });

  it("with single-reading messages (PUBLISH_BATCH=1) every reading goes at once, no window", () => {
    const single = { ...POLICY, maxReadings: 1 };
    const w = waiting({ unconfirmed: 10_000 });
    expect(publishNow(w, single, Number.POSITIVE_INFINITY)).toBe(true);
  });
});
