/** Pieces every delivery adapter uses: unique names, items as readings or message bodies, a sink's upstream. */
import { randomBytes } from "node:crypto";
import type { FailableDelivery } from "../../../common/pipeline.js";
import type { Reading } from "../../../schemas/index.js";

/** A stopped AMQP input waits this long for deliveries the test holds unacked. */
export const DRAIN_TIMEOUT_MS = 1_000;
/** The AMQP input's and sink's `stallTimeoutMs` in the suite. */
export const STALL_TIMEOUT_MS = 30_000;

const BASE_TS = Date.UTC(2026, 0, 1);

/** A name of the test's own for queues, client ids and files: `dg-<label>-<random>`. */
export function uniqueId(label: string): string {
  return `dg-${label}-${randomBytes(4).toString("hex")}`;
}

/** The item number a message body carries (the body is the number as text). */
export const seqOfBody = (body: Buffer): number => Number(body.toString());

/** Item `seq` as a reading of device `device`: the item number is its `seq` and fixes its key. */
export function readingOf(device: string, seq: number): Reading {
  return {
    device_id: device,
    sensor: "value",
    ts: BASE_TS + seq,
    value: seq,
    unit: null,
    seq,
    gateway_id: "delivery-suite",
    received_at: Date.now(),
  };
}

/** A sink's upstream as the test plays it: each delivery records its one `ack`; a second one is a breach. */
export class SinkUpstream {
  readonly acked: number[] = [];
  readonly violations: string[] = [];

  delivery<T>(seq: number, item: T): FailableDelivery<T> {
    let settled: string | undefined;
    const settle = (how: string) => {
      if (settled) this.violations.push(`item ${seq}: ${how} after ${settled}`);
      settled ??= how;
    };
    return {
      item,
      ack: () => {
        settle("ack");
        this.acked.push(seq);
      },
      fail: (failure) => {
        settle("fail");
        this.violations.push(`item ${seq} set aside: ${failure.kind}: ${failure.reason}`);
      },
    };
  }
}
