import { describe, expect, it } from "vitest";
import { ByteBudget } from "../../common/byte-budget.js";
import { parsers } from "../../common/config.js";
import { InflightWindow } from "../../mqtt/window.js";

describe("ByteBudget", () => {
  it("counts what is held until it is released, once, and is full at its limit", () => {
    const budget = new ByteBudget(100);
    const a = budget.hold(60);
    const b = budget.hold(39);
    expect(budget.held).toBe(99);
    expect(budget.full).toBe(false);
    const c = budget.hold(1);
    expect(budget.full).toBe(true);
    a();
    a();
    expect(budget.held).toBe(40);
    b();
    c();
    expect(budget.held).toBe(0);
  });

  it("tells its listeners when it stops being full, not on every release", () => {
    const budget = new ByteBudget(10);
    let calls = 0;
    const stop = budget.onRoom(() => calls++);
    const a = budget.hold(6);
    const b = budget.hold(6);
    const c = budget.hold(6);
    a();
    expect(calls).toBe(0); // 12 of 10: still full
    b();
    expect(calls).toBe(1);
    stop();
    const d = budget.hold(10);
    d();
    c();
    expect(calls).toBe(1);
  });
});

/** A window over string items of given sizes, sharing `budget`; drains run when `runScheduled` says. */
function harness(limit: number, budget: ByteBudget) {
  const delivered: string[] = [];
  const acks = new Map<string, () => void>();
  const events: string[] = [];
  const scheduled: (() => void)[] = [];
  const window = new InflightWindow<string>(
    limit,
    {
      deliver: (item, ack) => {
        delivered.push(item);
        acks.set(item, ack);
      },
      puback: (messageId) => events.push(`puback ${messageId}`),
      pause: () => events.push("pause"),
      resume: () => events.push("resume"),
      overflow: () => events.push("overflow"),
    },
    (run) => scheduled.push(run),
    budget,
  );
  return {
    window,
    delivered,
    events,
    ack: (item: string) => acks.get(item)?.(),
    runScheduled: () => {
      while (scheduled.length > 0) scheduled.shift()?.();
    },
  };
}

describe("the MQTT window under a byte budget", () => {
  it("stops handing on and reading once the budget is full, and goes on as acks free bytes", () => {
    const budget = new ByteBudget(1_000);
    const h = harness(100, budget);
    h.window.arrive(1, "m1", 400);
    h.window.arrive(2, "m2", 400);
    h.window.arrive(3, "m3", 400); // its own bytes fill the budget: held
    expect(h.delivered).toEqual(["m1", "m2"]);
    expect(h.window.heldCount).toBe(1);
    // Holding for want of bytes is not the broker's overflow; the connection is asked to stop reading.
    expect(h.events).toEqual(["pause"]);
    expect(budget.held).toBe(1_200);

    h.ack("m2");
    expect(h.delivered).toEqual(["m1", "m2"]); // handed on by the scheduled drain, not inside the ack
    h.runScheduled();
    expect(h.delivered).toEqual(["m1", "m2", "m3"]);
    expect(h.events).toEqual(["pause", "resume"]);
    h.window.arrive(4, "m4", 400);
    expect(h.delivered).toEqual(["m1", "m2", "m3"]);
    h.ack("m3");
    h.runScheduled();
    expect(h.delivered).toEqual(["m1", "m2", "m3", "m4"]);
    // PUBACKs still leave in arrival order.
    h.ack("m1");
    h.ack("m4");
    expect(h.events.filter((e) => e.startsWith("puback"))).toEqual([
      "puback 1",
      "puback 2",
      "puback 3",
      "puback 4",
    ]);
    expect(budget.held).toBe(0);
  });

  it("lets a message larger than the whole budget through when it holds nothing else", () => {
    const budget = new ByteBudget(1_000);
    const h = harness(100, budget);
    h.window.arrive(1, "huge", 5_000);
    expect(h.delivered).toEqual(["huge"]);
    h.window.arrive(2, "next", 10);
    expect(h.delivered).toEqual(["huge"]);
    h.ack("huge");
    h.runScheduled();
    expect(h.delivered).toEqual(["huge", "next"]);
  });

  it("takes one message while other parts keep the budget full, so that it never waits for ever", () => {
    const budget = new ByteBudget(1_000);
    const elsewhere = budget.hold(2_000); // e.g. the spool's drain, or a connection that is gone
    const h = harness(100, budget);
    h.window.arrive(1, "m1", 100);
    h.window.arrive(2, "m2", 100);
    expect(h.delivered).toEqual(["m1"]);
    h.ack("m1");
    h.runScheduled();
    expect(h.delivered).toEqual(["m1", "m2"]);
    elsewhere();
  });

  it("does the same for QoS 0 messages, which free their bytes with no PUBACK to wait for", () => {
    const budget = new ByteBudget(1_000);
    const elsewhere = budget.hold(2_000);
    const h = harness(100, budget);
    h.window.arrive(undefined, "q1", 100);
    h.window.arrive(undefined, "q2", 100);
    expect(h.delivered).toEqual(["q1"]);
    h.ack("q1");
    h.runScheduled();
    expect(h.delivered).toEqual(["q1", "q2"]);
    elsewhere();
  });

  it("gives back the bytes of held messages when the connection goes, and of handed-on ones at their ack", () => {
    const budget = new ByteBudget(1_000);
    const h = harness(100, budget);
    h.window.arrive(1, "m1", 1_500);
    h.window.arrive(2, "m2", 300);
    h.window.arrive(3, "m3", 300);
    expect(budget.held).toBe(2_100);
    h.window.close();
    expect(budget.held).toBe(1_500);
    h.ack("m1"); // the sink confirms it after the connection went: no PUBACK, but the bytes are free
    expect(budget.held).toBe(0);
    expect(h.events.filter((e) => e.startsWith("puback"))).toEqual([]);
  });
});

describe("a size setting", () => {
  const parse = parsers.bytes(1_048_576, 1_073_741_824);

  it("takes binary units and plain bytes, and prints MiB or GiB back", () => {
    expect(parse("64MiB")).toBe(67_108_864);
    expect(parse("64m")).toBe(67_108_864);
    expect(parse("1GiB")).toBe(1_073_741_824);
    expect(parse("2048k")).toBe(2_097_152);
    expect(parse("1_048_576")).toBe(1_048_576);
    expect(parse("1.5MiB")).toBe(1_572_864);
    expect(parse.format?.(33_554_432)).toBe("32MiB");
    expect(parse.format?.(1_000_000)).toBe("1000000");
  });

  it.each([
    ["a word", "lots", /must be a size such as 64MiB/],
    ["an unknown unit", "64MB", /must be a size such as/],
    ["too little", "512k", /must be between 1MiB and 1GiB/],
    ["too much", "2GiB", /must be between 1MiB and 1GiB/],
  ])("refuses %s, saying what is allowed", (_name, raw, why) => {
    expect(() => parse(raw)).toThrow(why);
  });
});
