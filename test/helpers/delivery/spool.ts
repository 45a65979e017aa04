/** The delivery suite's adapters for the spool: its sink (spool/sink.ts) and its input (spool/input.ts). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../../common/log.js";
import type { OutgoingBatch } from "../../../common/outgoing.js";
import { type Delivery, HEALTHY, running, type Sink } from "../../../common/pipeline.js";
import { decodeBatch } from "../../../spool/format.js";
import { startSpoolInput } from "../../../spool/input.js";
import { readSegmentRecords } from "../../../spool/segments.js";
import { SpoolSink } from "../../../spool/sink.js";
import { listSegments, SpoolStore } from "../../../spool/store.js";
import { type DeliveryAdapter, InputDownstream, type Rig } from "../delivery-suite.js";
import { DRAIN_TIMEOUT_MS, SinkUpstream } from "./shared.js";

/** Small enough that a filler makes the spool full at once, large enough for 2,000 items in flight. */
const SPOOL_TEST_BYTES = 1_048_576;
const FILLER = "filler";

/** Item `seq` as the spool keeps it: one reading whose message id is the item number. */
const spoolItem = (seq: number): OutgoingBatch => [
  { route: "readings", datum: Buffer.from(String(seq)), messageId: String(seq), receivedAt: Date.now() },
];
const spoolSeqOf = (batch: OutgoingBatch): number => {
  const m = batch[0];
  return m?.route === "readings" ? Number(m.messageId) : -1;
};

function openSpoolStore(dir: string): SpoolStore {
  return SpoolStore.open({
    dir,
    maxBytes: SPOOL_TEST_BYTES,
    maxAgeMs: 86_400_000,
    full: "block",
    log: silentLogger(),
  });
}

/** Every record on disk, as (record seq, batch), oldest first. */
function spoolRecords(dir: string): { seq: number; batch: OutgoingBatch }[] {
  return listSegments(dir).flatMap((s) =>
    readSegmentRecords(s.path).map((r) => ({ seq: r.seq, batch: decodeBatch(r.payload) })),
  );
}

/**
 * The spool as the gateway's sink (`SpoolSink` over `SpoolStore`): the test is the upstream (MQTT), an item is
 * acked once durable in the spool, and the downstream is the spool's files read back. The downstream refuses when
 * the spool is full under SPOOL_FULL=block: `refuse` fills it with filler records, `accept` confirms every record
 * stored (as the drain does once RabbitMQ takes them again), which frees their segments. Each start opens the directory anew, as a restarted gateway.
 */
export function spoolSinkAdapter(): DeliveryAdapter {
  return {
    name: "spool sink",
    role: "sink",
    notRun: {
      "acks in arrival order":
        "a sink acks each delivery once durable; a full spool holds what comes after, so nothing is handed on to hold",
      "broker lost and back":
        "the spool is a local directory, there is no broker to lose (a full spool is the nack scenario)",
    },
    async rig(): Promise<Rig> {
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-spool-"));
      const upstream = new SinkUpstream();
      let store: SpoolStore | undefined;
      let sink: SpoolSink | undefined;
      let accepted = false;
      /** Items by record seq, as read from the files: kept once read, since confirmed segments are deleted. */
      const seen = new Map<number, number>();
      const snapshot = () => {
        for (const r of spoolRecords(dir)) seen.set(r.seq, spoolSeqOf(r.batch));
      };
      /** The drain's part: every record stored is confirmed, so whole segments are freed. */
      const confirmAll = () => {
        const s = store;
        if (!s) return;
        snapshot();
        for (const r of spoolRecords(dir)) s.markDone(r.seq, r.batch.length);
      };
      return {
        async start() {
          const opened = openSpoolStore(dir);
          store = opened;
          if (accepted) confirmAll();
          const started = new SpoolSink(opened);
          sink = started;
          return running({ health: () => started.health() }, async () => {
            await started.stop();
            opened.close();
            if (store === opened) store = undefined;
          });
        },
        async inject(seqs) {
          const target = sink;
          if (!target) throw new Error("inject before start");
          for (const s of seqs) target.write(upstream.delivery(s, spoolItem(s)));
        },
        arrived: async () => {
          snapshot();
          return [...seen]
            .sort((a, b) => a[0] - b[0])
            .map(([, item]) => item)
            .filter((item) => item >= 0);
        },
        acked: () => upstream.acked,
        async refuse() {
          accepted = false;
          const s = store;
          if (!s) return;
          const filler: OutgoingBatch = [
            {
              route: "rejected",
              body: Buffer.alloc(4_096),
              properties: { headers: { kind: FILLER } },
              receivedAt: 0,
            },
          ];
          // Fill until full: the spool then holds every append after it, unacknowledged.
          while (!s.full) {
            await new Promise<void>((resolve) => {
              const poll = setInterval(() => s.full && done(), 5);
              const done = () => {
                clearInterval(poll);
                resolve();
              };
              s.append(filler, done);
            });
          }
        },
        async accept() {
          accepted = true;
          confirmAll();
        },
        refusalSeen: () => sink?.health().ready === false,
        released: async () => store === undefined,
        violations: () => upstream.violations,
        async [Symbol.asyncDispose]() {
          store?.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/**
 * The spool as the input of the gateway's uplink (`startSpoolInput`): the spool's files are the upstream (`inject`
 * appends records and waits until they are durable), the rig's handler the downstream (the AMQP sink's place), and
 * an item counts as acknowledged upstream once the spool's cursor is past it (confirmed, never sent again). Each
 * start opens the directory anew, as a restarted gateway.
 */
export function spoolInputAdapter(): DeliveryAdapter {
  return {
    name: "spool input",
    role: "input",
    notRun: {
      "broker lost and back":
        "the spool is a local directory, there is no broker to lose (its crash safety is tested in spool-outage)",
    },
    async rig(): Promise<Rig> {
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-spool-"));
      const downstream = new InputDownstream<OutgoingBatch>(spoolSeqOf);
      const sink: Sink<OutgoingBatch> = {
        write: (d: Delivery<OutgoingBatch>) => downstream.handler(d),
        inFlight: 0,
        health: () => HEALTHY,
        stop: async () => undefined,
        [Symbol.asyncDispose]: async () => undefined,
      };
      /** Item number by record seq, and how far the cursor has gone. */
      const itemOfRecord = new Map<number, number>();
      let store: SpoolStore | undefined;
      let confirmedBelow = 0;
      const open = (): SpoolStore => {
        store ??= openSpoolStore(dir);
        return store;
      };
      const close = () => {
        if (!store) return;
        confirmedBelow = store.firstNotDone;
        store.close();
        store = undefined;
      };
      return {
        async start() {
          const s = open();
          const input = startSpoolInput(s, sink, { log: silentLogger(), drainTimeoutMs: DRAIN_TIMEOUT_MS });
          return running({ health: () => input.health() }, async () => {
            await input.stop();
            close();
          });
        },
        async inject(seqs) {
          const s = open();
          let next = s.durableEnd;
          await Promise.all(
            seqs.map((seq) => {
              itemOfRecord.set(next++, seq);
              return new Promise<boolean>((resolve) => s.append(spoolItem(seq), resolve));
            }),
          );
        },
        arrived: async () => downstream.arrived,
        acked: () => {
          const below = store?.firstNotDone ?? confirmedBelow;
          return [...itemOfRecord].filter(([rec]) => rec < below).map(([, item]) => item);
        },
        async refuse() {
          downstream.hold();
        },
        async accept() {
          downstream.release();
        },
        refusalSeen: () => downstream.held > 0,
        released: async () => store === undefined,
        violations: () => [],
        async [Symbol.asyncDispose]() {
          close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}
