/**
 * The shared delivery-guarantee suite (issue 12, after Redpanda Connect's `stream_test_definitions.go`): one set of
 * scenarios written once against the pipeline's interfaces (common/pipeline.ts) and run against every input and
 * sink. An implementation joins with an adapter (`DeliveryAdapter`, see delivery-adapters.ts) and one line:
 * `describe("X", () => deliverySuite(xAdapter()))`.
 *
 * Items are numbered (`seq`). The suite only ever speaks of what a user could observe at both ends of the part
 * under test: what arrived downstream and what was acknowledged upstream.
 */
import { afterAll, expect, it, vi } from "vitest";
import type { Delivery, Health, Running } from "../../common/pipeline.js";
import { report } from "./fault-stream.js";

export const SCENARIOS = [
  "open/close",
  "in order",
  "acks in arrival order",
  "many in flight",
  "broker lost and back",
  "nack then redelivered",
  "stop mid-stream",
] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** The part under test once started: its own object, with its own `stop()` and `Symbol.asyncDispose`. */
export type Subject = Running & { health(): Health };

/**
 * One test's rig around the part under test, with names of its own (queue, topic, session, file); disposing it
 * stops what is still running and deletes them.
 *
 * For an **input** the broker is upstream: `inject` publishes to it, the rig's handler is the downstream
 * (`InputDownstream`), and `acked` is what went back to the broker. For a **sink** the test is the upstream:
 * `inject` writes deliveries, `arrived` reads the downstream (queue or table), `acked` lists the sink's `ack` calls.
 */
export interface Rig extends AsyncDisposable {
  /** Starts the part (again, after a stop: same names, so an input resumes its session or queue). */
  start(): Promise<Subject>;
  /** Puts the items upstream, in the order given; resolves once the upstream holds them. */
  inject(seqs: readonly number[]): Promise<void>;
  /** Items that arrived downstream so far, in arrival order, repeats included. */
  arrived(): Promise<readonly number[]>;
  /** Items acknowledged upstream so far, in order, repeats included. */
  acked(): readonly number[];
  /** The downstream stops taking items: an input's handler holds them unacked, a sink's store or queue refuses. */
  refuse(): Promise<void>;
  /** Undoes `refuse`; an input's handler acks what it held, in reverse order. */
  accept(): Promise<void>;
  /** Whether the part has met the refusal (an input: holds an item; a sink: reports itself not ready). */
  refusalSeen(): boolean;
  /** Whether the part let go of what it held open (its broker connection, its in-flight work). */
  released(): Promise<boolean>;
  /** Breaks the part's broker (the private one); present only where there is a broker to lose. */
  breakBroker?(): Promise<void>;
  /** Brings the broker back with what it had stored. */
  healBroker?(): Promise<void>;
  /** Breaches of the delivery contract the rig saw on its own (a delivery acked twice, an item set aside). */
  violations(): readonly string[];
}

/** How the suite drives one implementation. */
export interface DeliveryAdapter<B extends Running = Running> {
  readonly name: string;
  /** input: the broker upstream redelivers after a restart; sink: the part retries, the test re-writes after a stop. */
  readonly role: "input" | "sink";
  /**
   * Scenarios that do not apply to this part, each with why: they are not registered at all (a skipped test would be
   * a defect), so the reason lives here, in the adapter's declaration, for a reader of the suite.
   */
  readonly notRun?: Partial<Record<Scenario, string>>;
  /** The describe's one private broker, started on first use by a scenario that asks for it and stopped after all. */
  startPrivateBroker?(): Promise<B>;
  /** A rig for one scenario, on the shared brokers or (for faults) on `privateBroker()`. */
  rig(scenario: Scenario, privateBroker: () => Promise<B>): Promise<Rig>;
}

/**
 * The downstream of an input under test: records what it is handed, acks at once, or holds while refusing and acks
 * what it held in reverse order on release (so an input promising arrival order must reorder).
 */
export class InputDownstream<T> {
  readonly arrived: number[] = [];
  #held: (() => void)[] = [];
  #holding = false;

  constructor(private readonly seqOf: (item: T) => number) {}

  readonly handler = (delivery: Delivery<T>): void => {
    this.arrived.push(this.seqOf(delivery.item));
    if (this.#holding) this.#held.push(() => delivery.ack());
    else delivery.ack();
  };

  get held(): number {
    return this.#held.length;
  }

  hold(): void {
    this.#holding = true;
  }

  release(): void {
    this.#holding = false;
    const held = this.#held.reverse();
    this.#held = [];
    for (const ack of held) ack();
  }
}

const WAIT_MS = 20_000;
const WAIT_LONG_MS = 60_000;
const POLL_MS = 25;
const FAULT_TEST_MS = 180_000;

/** `count` consecutive item numbers from `from`. */
export function seqs(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

/** How many times each item occurs, as a sorted list of [seq, times]. */
function tally(list: readonly number[]): [number, number][] {
  const counts = new Map<number, number>();
  for (const s of list) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].sort((a, b) => a[0] - b[0]);
}

function missing(list: readonly number[], wanted: readonly number[]): number[] {
  const have = new Set(list);
  return wanted.filter((s) => !have.has(s));
}

/** Polls until `check` passes (it throws otherwise), for at most `timeoutMs`. */
async function eventually(check: () => unknown, timeoutMs = WAIT_MS): Promise<void> {
  await vi.waitFor(check, { timeout: timeoutMs, interval: POLL_MS });
}

function expectCovers(list: readonly number[], wanted: readonly number[], what: string): void {
  expect(missing(list, wanted), `${what}: items missing`).toEqual([]);
}

/**
 * Registers the scenarios for one implementation inside the caller's `describe`. A scenario the adapter lists in
 * `notRun` is not registered, so the suite reports only tests that run.
 */
export function deliverySuite<B extends Running>(adapter: DeliveryAdapter<B>): void {
  let broker: Promise<B> | undefined;
  const privateBroker = (): Promise<B> => {
    if (!adapter.startPrivateBroker) throw new Error(`${adapter.name} has no private broker`);
    broker ??= adapter.startPrivateBroker();
    return broker;
  };
  afterAll(async () => {
    if (broker) await (await broker).stop();
  });

  const scenario = (name: Scenario, title: string, body: (rig: Rig) => Promise<void>, timeoutMs?: number) => {
    if (adapter.notRun?.[name] !== undefined) return;
    it(
      `${name}: ${title}`,
      async () => {
        await using rig = await adapter.rig(name, privateBroker);
        await body(rig);
        expect(rig.violations()).toEqual([]);
      },
      timeoutMs,
    );
  };
  const input = adapter.role === "input";

  scenario(
    "open/close",
    "started and stopped with nothing lost; stop() is idempotent; `await using` disposes",
    async (rig) => {
      const first = seqs(0, 10);
      {
        await using subject = await rig.start();
        await rig.inject(first);
        await eventually(() => expectCovers(rig.acked(), first, "acked"));
        await Promise.all([subject.stop(), subject.stop()]);
        await subject.stop();
        await eventually(async () => expect(await rig.released()).toBe(true));
      } // disposing after stop() must resolve too
      await eventually(async () => expectCovers(await rig.arrived(), first, "downstream"));
      // After a restart: an input's upstream delivers what it kept before anything published later, so once the
      // marker arrived, an acknowledged item delivered again would have shown up.
      const marker = [first.length];
      {
        await using _again = await rig.start();
        await rig.inject(marker);
        await eventually(() => expectCovers(rig.acked(), marker, "acked"));
        await eventually(async () => expectCovers(await rig.arrived(), marker, "downstream"));
      }
      await eventually(async () => expect(await rig.released(), "released by `await using`").toBe(true));
      expect(tally(await rig.arrived())).toEqual(tally([...first, ...marker]));
      expect(tally(rig.acked())).toEqual(tally([...first, ...marker]));
    },
  );

  scenario(
    "in order",
    "items sent one after another arrive downstream in that order, each acked once",
    async (rig) => {
      const items = seqs(0, 100);
      await using _subject = await rig.start();
      await rig.inject(items);
      await eventually(() => expectCovers(rig.acked(), items, "acked"));
      await eventually(async () => expect((await rig.arrived()).length).toBeGreaterThanOrEqual(items.length));
      expect(await rig.arrived()).toEqual(items);
      expect(tally(rig.acked())).toEqual(tally(items));
    },
  );

  scenario(
    "acks in arrival order",
    "acks given in reverse go upstream in arrival order, none before its turn",
    async (rig) => {
      const items = seqs(0, 50);
      await using _subject = await rig.start();
      await rig.refuse();
      await rig.inject(items);
      await eventually(async () => expectCovers(await rig.arrived(), items, "handed on"));
      expect(rig.acked(), "acked upstream while the downstream held everything").toEqual([]);
      await rig.accept();
      await eventually(() => expectCovers(rig.acked(), items, "acked"));
      expect(rig.acked()).toEqual(items);
    },
  );

  scenario(
    "many in flight",
    "2,000 items at once are all delivered and each acked exactly once",
    async (rig) => {
      const items = seqs(0, 2_000);
      await using _subject = await rig.start();
      const started = performance.now();
      await rig.inject(items);
      await eventually(() => expectCovers(rig.acked(), items, "acked"), WAIT_LONG_MS);
      const ms = Math.round(performance.now() - started);
      await eventually(async () => expectCovers(await rig.arrived(), items, "downstream"));
      expect(tally(rig.acked())).toEqual(tally(items));
      report(`${adapter.name}: many in flight`, { items: items.length, ackedAllInMs: ms });
    },
  );

  scenario(
    "broker lost and back",
    "nothing acked that was not delivered; everything delivered once the broker is back",
    async (rig) => {
      if (!rig.breakBroker || !rig.healBroker) throw new Error(`${adapter.name}: no broker to break`);
      const before = seqs(0, 200);
      const across = seqs(200, 200);
      const after = seqs(400, 200);
      const subject = await rig.start();
      let broken = false;
      try {
        await rig.inject(before);
        await eventually(() => expectCovers(rig.acked(), before, "acked before the fault"));
        if (input) {
          // Items handed on and not acked when the broker goes: their acks, given while it is away, must not count.
          await rig.refuse();
          await rig.inject(across);
          await eventually(async () => expectCovers(await rig.arrived(), across, "handed on"));
        }
        broken = true;
        await rig.breakBroker();
        await eventually(() => expect(subject.health().ready, "ready while its broker is gone").toBe(false));
        if (input) await rig.accept();
        else await rig.inject(across); // written while the broker is gone: kept, not acked
        const ackedWhileBroken = rig.acked().filter((s) => across.includes(s));
        expect(ackedWhileBroken, "acked while the broker was gone").toEqual([]);
        await rig.healBroker();
        broken = false;
        await eventually(() => expect(subject.health()).toEqual({ ready: true }), WAIT_LONG_MS);
        await rig.inject(after);
        const all = [...before, ...across, ...after];
        await eventually(() => expectCovers(rig.acked(), all, "acked"), WAIT_LONG_MS);
        await eventually(async () =>
          expectCovers(await rig.arrived(), rig.acked(), "acked but not delivered"),
        );
        const arrived = await rig.arrived();
        if (input) {
          const again = across.filter((s) => arrived.filter((a) => a === s).length < 2);
          expect(again, "held across the fault and not delivered again").toEqual([]);
        }
        report(`${adapter.name}: broker lost and back`, {
          items: all.length,
          arrivals: arrived.length,
          acks: rig.acked().length,
        });
      } finally {
        await subject.stop();
        // The describe's broker serves the scenarios after this one too.
        if (broken) await rig.healBroker();
      }
    },
    FAULT_TEST_MS,
  );

  scenario(
    "nack then redelivered",
    input
      ? "items not acked before stop() are delivered again after a restart"
      : "items the downstream refuses are retried and acked only once they land",
    async (rig) => {
      const items = seqs(0, 20);
      const subject = await rig.start();
      await rig.refuse();
      await rig.inject(items);
      await eventually(() => expect(rig.refusalSeen()).toBe(true));
      const ackedWhileRefused = [...rig.acked()];
      if (input) {
        expect(ackedWhileRefused, "acked upstream while the downstream held everything").toEqual([]);
        await eventually(async () => expectCovers(await rig.arrived(), items, "handed on"));
        await subject.stop();
        await rig.accept(); // acks for a stopped input: nothing may go upstream
        await using _restarted = await rig.start();
        await eventually(async () => {
          const arrived = await rig.arrived();
          expect(items.filter((s) => arrived.filter((a) => a === s).length < 2)).toEqual([]);
        });
        await eventually(() => expectCovers(rig.acked(), items, "acked after the restart"));
      } else {
        // A limit may let the first message in (a quorum queue with max-length 0 takes one): what was acked then
        // must have landed, which the checks below cover; what waits must not be acked until it lands.
        expect(ackedWhileRefused.length, "every item acked while the downstream refused").toBeLessThan(
          items.length,
        );
        await rig.accept();
        await eventually(() => expectCovers(rig.acked(), items, "acked once landed"), WAIT_LONG_MS);
        await eventually(async () => expectCovers(await rig.arrived(), items, "downstream"));
        await subject.stop();
      }
      expect(tally(rig.acked())).toEqual(tally(items));
      report(`${adapter.name}: nack then redelivered`, {
        items: items.length,
        ackedWhileRefused: ackedWhileRefused.length,
      });
    },
    FAULT_TEST_MS,
  );

  scenario(
    "stop mid-stream",
    "items in flight at stop() are either acked after being durable or delivered again, never lost",
    async (rig) => {
      const streamed = seqs(0, 1_000);
      const waiting = seqs(1_000, 100);
      const items = [...streamed, ...waiting];
      const first = await rig.start();
      const injecting = rig.inject(streamed);
      await eventually(() => expect(rig.acked().length).toBeGreaterThan(0));
      // Some items certainly in flight at the stop, whatever the machine's speed: the downstream takes no more.
      await rig.refuse();
      await injecting;
      await rig.inject(waiting);
      await eventually(() => expect(rig.refusalSeen()).toBe(true));
      await first.stop();
      await rig.accept(); // a stopped part must not act on it
      const ackedAtStop = [...rig.acked()];
      expect(missing(ackedAtStop, items).length, "items in flight at stop()").toBeGreaterThan(0);
      // Acked means durable downstream: every one of them is there, with the part stopped.
      await eventually(async () => expectCovers(await rig.arrived(), ackedAtStop, "acked before stop()"));
      await using _second = await rig.start();
      // A sink's upstream (here the test) delivers again what it was not acked; an input's broker does it itself.
      const unacked = missing(ackedAtStop, items);
      if (!input) await rig.inject(unacked);
      await eventually(() => expectCovers(rig.acked(), items, "acked"), WAIT_LONG_MS);
      await eventually(async () => expectCovers(await rig.arrived(), items, "downstream"));
      if (input) {
        const arrived = await rig.arrived();
        const arrivedAtStop = new Set(ackedAtStop);
        const again = arrived.filter((s, i) => arrivedAtStop.has(s) && arrived.indexOf(s) !== i);
        expect(again, "acked before stop() and delivered again").toEqual([]);
      }
      report(`${adapter.name}: stop mid-stream`, {
        items: items.length,
        ackedAtStop: ackedAtStop.length,
        redeliveredOrRewritten: unacked.length,
      });
    },
    FAULT_TEST_MS,
  );
}
