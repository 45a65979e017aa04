/**
 * Figures for the gateway's spool (issue 16), one run: `npm run build && node dist/bench/spool.js [READINGS]`.
 *
 * 1. Ingest: READINGS readings are queued in the gateway's MQTT session (a private Mosquitto keeping everything),
 *    then a gateway is started and timed until it has taken them all: without a spool against RabbitMQ (PUBACK after
 *    the confirm), and with a spool while the uplink refuses connections (PUBACK once durable on disk).
 * 2. Drain: a gateway started on that spool with RabbitMQ back, timed until the spool is empty (no live load).
 * 3. Bytes on disk per reading, from the spool's size when it held the whole stream.
 * 4. Opening a large spool (SPOOL_BENCH_OPEN_MIB, default 1,024 MiB): time and RSS of a fresh process opening it.
 * 5. Live delay while a backlog drains: a spool holding a backlog (LIVE_BACKLOG readings) drains through the real
 *    AMQP sink into RabbitMQ while live readings are appended at LIVE_RATE/s; each live reading's delay is from its
 *    append being durable to RabbitMQ's confirm.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import amqp from "amqplib";
import { AmqpSink, type OutgoingBatch } from "../amqp/sink.js";
import { queueNames } from "../amqp/topology.js";
import { silentLogger } from "../common/log.js";
import type { Delivery, Sink } from "../common/pipeline.js";
import { SchemaRegistry } from "../schemas/index.js";
import { freePort, startPrivateMosquitto } from "../scripts/private-brokers.js";
import { type Service, startService } from "../scripts/spawn.js";
import { DEFAULT_SENSORS, NO_FAULTS } from "../simulators/model.js";
import { simulate } from "../simulators/publish.js";
import { startSpoolInput } from "../spool/input.js";
import { SpoolStore } from "../spool/store.js";
import { parseMetrics, total } from "./metrics.js";

const READINGS = Number(process.argv[2] ?? 30_000);
const OPEN_MIB = Number(process.env.SPOOL_BENCH_OPEN_MIB ?? 1_024);
const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const POLL_MS = 20;
const LIVE_BACKLOG = 200_000;
const LIVE_RATE = 1_000;
const LIVE_TICK_MS = 10;

async function metricOf(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return total(parseMetrics(await res.text()), name);
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function main(): Promise<void> {
  const mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
  const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-bench-"));
  const dead = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
  const results: Record<string, number | string> = { readings: READINGS };
  const services: Service[] = [];
  try {
    for (const mode of ["no-spool", "spool-uplink-down"] as const) {
      const id = `spool-bench-${mode}-${Date.now().toString(36)}`;
      const env = {
        MQTT_URL: mosquitto.url,
        AMQP_URL: mode === "no-spool" ? AMQP_URL : dead,
        QUEUE: `bench.${id}`,
        TOPIC_PREFIX: id,
        GATEWAY_ID: id,
        HTTP_PORT: "0",
        LOG_LEVEL: "warn",
        ...(mode === "no-spool" ? {} : { SPOOL_PATH: join(dir, "spool") }),
      };
      // The session first (a gateway subscribes once), then the stream queued in it while no gateway runs.
      const first = await startService("gateway", { ...env, LOG_LEVEL: "info" });
      await waitFor(
        async () => first.logs.some((l) => l.msg === "MQTT connected and subscribed"),
        "subscribed",
      );
      await first.stop("SIGTERM");
      await simulate(
        {
          mqttUrl: mosquitto.url,
          topicPrefix: id,
          devices: 50,
          sensors: DEFAULT_SENSORS,
          devicePrefix: "dev",
          rate: 0,
          count: READINGS,
          window: 1_000,
          faults: NO_FAULTS,
          batchSize: 1,
          seed: 16,
        },
        { log: silentLogger() },
      );
      const started = performance.now();
      const g = await startService("gateway", { ...env, LOG_LEVEL: "info" });
      services.push(g);
      const doneMetric =
        mode === "no-spool"
          ? "telemetry_gateway_readings_published_total"
          : "telemetry_gateway_spool_depth_readings";
      await waitFor(async () => (await metricOf(g.httpPort, doneMetric)) >= READINGS, `${mode}: all taken`);
      const ms = performance.now() - started;
      results[`${mode} readings/s`] = Math.round(READINGS / (ms / 1_000));
      if (mode === "spool-uplink-down") {
        results["spool bytes per reading"] = Math.round(
          (await metricOf(g.httpPort, "telemetry_gateway_spool_bytes")) / READINGS,
        );
        await g.stop("SIGTERM");
        const drainStart = performance.now();
        const d = await startService("gateway", { ...env, AMQP_URL, LOG_LEVEL: "info" });
        services.push(d);
        await waitFor(
          async () => (await metricOf(d.httpPort, "telemetry_gateway_spool_depth_readings")) === 0,
          "drained",
        );
        results["drain readings/s (no live load)"] = Math.round(
          READINGS / ((performance.now() - drainStart) / 1_000),
        );
        await d.stop("SIGTERM");
      } else {
        await g.stop("SIGTERM");
      }
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      for (const q of Object.values(queueNames(env.QUEUE))) await ch.deleteQueue(q);
      await conn.close();
    }
    Object.assign(results, await liveDelayWhileDraining(join(dir, "live")));
    results["spool/no-spool ingest ratio"] = (
      (results["spool-uplink-down readings/s"] as number) / (results["no-spool readings/s"] as number)
    ).toFixed(2);

    // A large spool, written directly (100-byte readings, as the gateway's Avro datums are about that size).
    const big = join(dir, "big");
    const store = SpoolStore.open({
      dir: big,
      maxBytes: (OPEN_MIB + 64) * 1_048_576,
      maxAgeMs: 86_400_000,
      full: "block",
      log: silentLogger(),
    });
    const datum = Buffer.alloc(100, 7);
    const perRecord = 32 + 4 + 9 + 6 + 100;
    const records = Math.floor((OPEN_MIB * 1_048_576) / perRecord);
    const writeStart = performance.now();
    const CHUNK = 50_000;
    for (let i = 0; i < records; i += CHUNK) {
      const n = Math.min(CHUNK, records - i);
      await Promise.all(
        Array.from(
          { length: n },
          () =>
            new Promise((r) =>
              store.append([{ route: "readings", datum, messageId: undefined, receivedAt: Date.now() }], r),
            ),
        ),
      );
    }
    results["direct append readings/s (100 B datums)"] = Math.round(
      records / ((performance.now() - writeStart) / 1_000),
    );
    store.close();
    const script = `
      const { SpoolStore } = await import(${JSON.stringify(new URL("../spool/store.js", import.meta.url).href)});
      const log = { info() {}, warn() {}, error() {}, debug() {} };
      const t = performance.now();
      const s = SpoolStore.open({ dir: ${JSON.stringify(big)}, maxBytes: ${(OPEN_MIB + 64) * 1_048_576}, maxAgeMs: 86400000, full: "block", log });
      const ms = performance.now() - t;
      const d = s.depth();
      s.close();
      console.log(JSON.stringify({ ms, rssMiB: process.memoryUsage().rss / 1048576, records: d.records, bytes: d.bytes }));
    `;
    const bare = JSON.parse(
      execFileSync(process.execPath, [
        "--input-type=module",
        "-e",
        "console.log(JSON.stringify({rssMiB: process.memoryUsage().rss/1048576}))",
      ]).toString(),
    ) as { rssMiB: number };
    // Drop the page cache's advantage? Not possible without root; the figure is for a warm cache.
    const opened = JSON.parse(
      execFileSync(process.execPath, ["--input-type=module", "-e", script]).toString(),
    ) as {
      ms: number;
      rssMiB: number;
      records: number;
      bytes: number;
    };
    results[`open ${(opened.bytes / 1_048_576).toFixed(0)} MiB spool (${opened.records} records) ms`] =
      Math.round(opened.ms);
    results["open: process RSS MiB (bare node)"] = `${opened.rssMiB.toFixed(0)} (${bare.rssMiB.toFixed(0)})`;
    console.log(JSON.stringify(results, null, 2));
  } finally {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await mosquitto.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Phase 5: p50/p99 delay of live readings appended while a backlog drains into RabbitMQ. */
async function liveDelayWhileDraining(dir: string): Promise<Record<string, number>> {
  const schemas = SchemaRegistry.load();
  const store = SpoolStore.open({
    dir,
    maxBytes: 4_294_967_296,
    maxAgeMs: 86_400_000,
    full: "block",
    log: silentLogger(),
  });
  const datum = Buffer.alloc(100, 1);
  const put = (id: string) =>
    new Promise<number>((resolve) =>
      store.append([{ route: "readings", datum, messageId: id, receivedAt: Date.now() }], () =>
        resolve(performance.now()),
      ),
    );
  await Promise.all(Array.from({ length: LIVE_BACKLOG }, (_, i) => put(`backlog-${i}`)));
  const queue = `bench.spool-live-${Date.now().toString(36)}`;
  const amqpSink = new AmqpSink({
    url: AMQP_URL,
    queue,
    queueType: "quorum",
    name: "spool bench",
    log: silentLogger(),
    stallTimeoutMs: 60_000,
    framing: {
      single: (d) => schemas.frameSingle(d),
      batch: (d, bytes) => schemas.frameBatch(d, bytes),
    },
    batching: { maxReadings: 500, maxBytes: 262_144, window: 8 },
    messageIdPrefix: queue,
  });
  await amqpSink.start();
  const durableAt = new Map<string, number>();
  const delays: number[] = [];
  let backlogDone = 0;
  const timing: Sink<OutgoingBatch> = {
    write: (d: Delivery<OutgoingBatch>) =>
      amqpSink.write({
        item: d.item,
        ack: () => {
          const m = d.item[0];
          const id = m?.route === "readings" ? (m.messageId ?? "") : "";
          const at = durableAt.get(id);
          if (at !== undefined) delays.push(performance.now() - at);
          else backlogDone++;
          d.ack();
        },
      }),
    get inFlight() {
      return amqpSink.inFlight;
    },
    health: () => amqpSink.health(),
    stop: () => amqpSink.stop(),
    [Symbol.asyncDispose]: () => amqpSink.stop(),
  };
  const started = performance.now();
  const input = startSpoolInput(store, timing, { log: silentLogger(), drainTimeoutMs: 5_000 });
  let live = 0;
  const ticker = setInterval(() => {
    const n = Math.round((LIVE_RATE * LIVE_TICK_MS) / 1_000);
    for (let i = 0; i < n; i++) {
      const id = `live-${live++}`;
      void put(id).then((t) => durableAt.set(id, t));
    }
  }, LIVE_TICK_MS);
  await waitFor(async () => backlogDone >= LIVE_BACKLOG, "backlog drained");
  const drainMs = performance.now() - started;
  clearInterval(ticker);
  await waitFor(async () => delays.length >= live, "live readings confirmed", 60_000);
  await input.stop();
  await amqpSink.stop();
  store.close();
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  for (const q of Object.values(queueNames(queue))) await ch.deleteQueue(q);
  await conn.close();
  delays.sort((a, b) => a - b);
  const q = (p: number) =>
    Math.round(delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? 0);
  return {
    [`drain readings/s with ${LIVE_RATE}/s live (backlog ${LIVE_BACKLOG})`]: Math.round(
      LIVE_BACKLOG / (drainMs / 1_000),
    ),
    "live readings during the drain": live,
    "live delay p50 ms": q(0.5),
    "live delay p99 ms": q(0.99),
    "live delay max ms": q(1),
  };
}

await main();
