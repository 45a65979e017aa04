import { sleep } from "../common/backoff.js";
import type { ByteBudget } from "../common/byte-budget.js";
import type { Logger } from "../common/log.js";
import { heldBytes, type OutgoingBatch } from "../common/outgoing.js";
import { HEALTHY, type Health, type Input, running, type Sink } from "../common/pipeline.js";
import type { SpoolReader, SpoolStore } from "./store.js";

/**
 * Records handed downstream and not yet confirmed, at most: the bound on what RabbitMQ is sent ahead of its
 * confirms (the AMQP sink packs them into batch messages), and so the bound on the backlog a live record waits
 * behind.
 */
export const DRAIN_WINDOW = 4_000;
/** Records read per turn: live and backlog take turns of this size. */
const TURN_RECORDS = 250;
/** A live reader this far behind the newest durable record hands that stretch to the backlog and jumps ahead. */
const LIVE_LAG_RECORDS = DRAIN_WINDOW;
const STOP_POLL_MS = 20;

export interface SpoolInputOptions {
  readonly log: Logger;
  /** On `stop()`, how long to wait for records in flight downstream to be confirmed. */
  readonly drainTimeoutMs: number;
  /** Called once per record confirmed downstream, with its messages and whether it came from the backlog. */
  readonly onDone?: (messages: number, backlog: boolean) => void;
  /**
   * The gateway's byte budget: records read and not yet confirmed hold their bytes in it. The drain takes at most
   * half of it ({@link DRAIN_SHARE}) and reads nothing while it is full, so that the MQTT input always keeps room to
   * take readings into the spool; it always may hold one record, whatever its size.
   */
  readonly budget?: ByteBudget | undefined;
}

/** The part of the byte budget the drain may hold: the rest stays for readings coming into the spool. */
export const DRAIN_SHARE = 0.5;

/** The spool as an input, running: how far the drain is. */
export interface SpoolInput extends Input {
  /** Records handed downstream and not yet confirmed. */
  readonly inFlight: number;
  /** Records waiting in the backlog (behind the live reader). */
  backlog(): number;
}

/**
 * Starts the spool's input: reads durable records in seq order and writes each into `sink` as a delivery whose
 * `ack` marks it done in the spool (deleted once its whole segment is done). Records written since the input
 * started (live) and records left from before or from an outage (backlog) take turns of 250 records, within a window
 * of 4,000 records in flight, so a live record waits behind at most the window, never behind the whole backlog,
 * and the backlog drains at least as fast as half of what the sink confirms. A live reader that falls more than a
 * window behind (the uplink is down) leaves that stretch to the backlog and goes on with the newest records.
 * With a byte budget the window is also bounded in bytes (see {@link SpoolInputOptions.budget}).
 * `stop()` stops reading, waits up to `drainTimeoutMs` for confirms (not at all while the sink is not ready, e.g.
 * the uplink is down), and leaves the rest in the spool.
 */
export function startSpoolInput(
  store: SpoolStore,
  sink: Sink<OutgoingBatch>,
  opts: SpoolInputOptions,
): SpoolInput {
  const live: SpoolReader = store.reader();
  const old: SpoolReader = store.reader();
  let liveNext = store.durableEnd;
  /** Backlog stretches [from, to), oldest first. */
  const regions: [number, number][] = [];
  if (store.firstNotDone < liveNext) regions.push([store.firstNotDone, liveNext]);
  let inFlight = 0;
  /** Bytes of the records in flight, as the budget counts them. */
  let heldNow = 0;
  const budget = opts.budget;
  const share = budget ? budget.limit * DRAIN_SHARE : Number.POSITIVE_INFINITY;
  /** Room for more records: the count window, and the drain's share of a budget that is not full. */
  const canRead = () => inFlight < DRAIN_WINDOW && (inFlight === 0 || (heldNow < share && !budget?.full));
  /** About how many bytes the next read may bring, at least one record's worth. */
  const bytesRoom = () => (budget?.full ? 1 : Math.max(1, share - heldNow));
  let pumping = false;
  let again = false;
  let stopped = false;
  let failure: string | undefined;
  let liveTurn = true;

  const addBacklog = (from: number, to: number) => {
    const last = regions.at(-1);
    if (last && last[1] === from) last[1] = to;
    else regions.push([from, to]);
  };

  const handOn = (seq: number, messages: number, batch: OutgoingBatch, backlog: boolean) => {
    inFlight++;
    const bytes = budget ? heldBytes(batch) : 0;
    heldNow += bytes;
    const release = budget?.hold(bytes);
    sink.write({
      item: batch,
      ack: () => {
        inFlight--;
        heldNow -= bytes;
        release?.();
        store.markDone(seq, messages);
        opts.onDone?.(messages, backlog);
        void pump();
      },
    });
  };

  const pump = async (): Promise<void> => {
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      do {
        again = false;
        const end = store.durableEnd;
        const first = store.firstNotDone;
        while (regions[0] && regions[0][1] <= first) regions.shift();
        if (regions[0]) regions[0][0] = Math.max(regions[0][0], first);
        if (liveNext < first) liveNext = first;
        if (end - liveNext > LIVE_LAG_RECORDS) {
          addBacklog(liveNext, end);
          liveNext = end;
        }
        while (!stopped && canRead()) {
          const room = Math.min(TURN_RECORDS, DRAIN_WINDOW - inFlight);
          const bytes = bytesRoom();
          const liveReady = liveNext < store.durableEnd;
          const region = regions[0];
          if (!liveReady && !region) break;
          const useLive = liveReady && (liveTurn || !region);
          liveTurn = !useLive;
          if (useLive) {
            const { records, next } = await live.read(liveNext, store.durableEnd, room, bytes);
            liveNext = Math.max(liveNext, next);
            for (const r of records) handOn(r.seq, r.messages, r.batch, false);
          } else if (region) {
            const { records, next } = await old.read(region[0], region[1], room, bytes);
            region[0] = Math.max(region[0], next);
            if (region[0] >= region[1]) regions.shift();
            for (const r of records) handOn(r.seq, r.messages, r.batch, true);
          }
        }
      } while (again && !stopped);
      failure = undefined;
    } catch (err) {
      failure = (err as Error).message;
      opts.log.error({ err: failure }, "spool read failed; retrying");
      setTimeout(() => void pump(), 1_000).unref();
    } finally {
      pumping = false;
    }
  };

  const unsubscribe = store.onChange(() => void pump());
  const unwatchBudget = budget?.onRoom(() => void pump());
  void pump();

  const input = {
    get inFlight() {
      return inFlight;
    },
    backlog: () => regions.reduce((n, [a, b]) => n + b - a, 0),
    health: (): Health => (failure ? { ready: false, reason: `spool read failing: ${failure}` } : HEALTHY),
  };
  return running(input, async () => {
    stopped = true;
    unsubscribe();
    unwatchBudget?.();
    // Waiting is only worth it while RabbitMQ can confirm: what is in flight is durable in the spool and is sent
    // again at the next start, so an uplink that is down need not hold the stop for the whole drain timeout.
    const deadline = Date.now() + opts.drainTimeoutMs;
    while (inFlight > 0 && sink.health().ready && Date.now() < deadline) await sleep(STOP_POLL_MS);
    await live.close();
    await old.close();
  });
}
