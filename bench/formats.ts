/**
 * `node dist/bench/formats.js [--readings N] [--batch B]`: the gateway's throughput and CPU per reading for each
 * input format (our JSON, SenML, Sparkplug B), one after the other on the same brokers. For each format a fresh
 * gateway (its own queue, topic prefix, Sparkplug group and session) takes N readings from the simulator, B per
 * message, published as fast as the simulator's window allows, through a private Mosquitto (`--mqtt-url` to use
 * another); the figure is from the first publish until RabbitMQ
 * confirmed the last reading (`telemetry_gateway_readings_published_total`), and the gateway's CPU time (user +
 * system, /proc) over the same span divided by N. No processor runs: the readings stay in the queue, deleted after.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import amqp from "amqplib";
import mqtt from "mqtt";
import { queueNames } from "../amqp/topology.js";
import { silentLogger } from "../common/log.js";
import { startPrivateMosquitto } from "../scripts/private-brokers.js";
import { startService, untilReady } from "../scripts/spawn.js";
import type { SimFormat } from "../simulators/formats.js";
import { NO_FAULTS } from "../simulators/model.js";
import { simulate } from "../simulators/publish.js";
import { scrape, total } from "./metrics.js";
import { readProc } from "./proc.js";

const POLL_MS = 100;
const CONFIRM_TIMEOUT_MS = 120_000;
const SENSORS = ["temperature", "humidity", "pressure"];

interface FormatFigure {
  readonly format: SimFormat;
  readonly readings: number;
  readonly stored: number;
  readonly seconds: number;
  readonly readingsPerSecond: number;
  readonly gatewayCpuUsPerReading: number;
}

async function runFormat(format: SimFormat, n: number, batch: number, urls: { mqtt: string; amqp: string }) {
  const id = `bench-formats-${format}-${randomBytes(3).toString("hex")}`;
  const queue = `bench.${id}`;
  const env = {
    AMQP_URL: urls.amqp,
    MQTT_URL: urls.mqtt,
    QUEUE: queue,
    TOPIC_PREFIX: id,
    GATEWAY_ID: id,
    SPARKPLUG_GROUPS: id,
    HTTP_PORT: "0",
    LOG_LEVEL: "info", // startService waits for the "gateway started" line
  };
  const gateway = await startService("gateway", env);
  try {
    await untilReady(gateway);
    const pid = gateway.proc.pid ?? 0;
    const cpu0 = readProc(pid)?.cpuMs ?? 0;
    const t0 = performance.now();
    await simulate(
      {
        mqttUrl: urls.mqtt,
        topicPrefix: id,
        devices: 10,
        sensors: SENSORS,
        devicePrefix: "dev",
        rate: 0,
        count: n,
        window: 500,
        faults: NO_FAULTS,
        batchSize: batch,
        format,
        sparkplugGroup: id,
        seed: 1,
        startTs: Date.UTC(2026, 0, 1),
        intervalMs: 1,
      },
      { log: silentLogger() },
    );
    let confirmed = 0;
    const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
    while (confirmed < n && Date.now() < deadline) {
      confirmed = total(await scrape(gateway.httpPort), "telemetry_gateway_readings_published_total");
      if (confirmed < n) await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const seconds = (performance.now() - t0) / 1_000;
    const cpuMs = (readProc(pid)?.cpuMs ?? 0) - cpu0;
    return {
      format,
      readings: n,
      stored: confirmed,
      seconds: Number(seconds.toFixed(2)),
      readingsPerSecond: Math.round(confirmed / seconds),
      gatewayCpuUsPerReading: Number(((cpuMs * 1_000) / Math.max(confirmed, 1)).toFixed(1)),
    } satisfies FormatFigure;
  } finally {
    await gateway.stop();
    const conn = await amqp.connect(urls.amqp);
    const ch = await conn.createChannel();
    for (const q of Object.values(queueNames(queue))) await ch.deleteQueue(q);
    await conn.close();
    const session = await mqtt.connectAsync(urls.mqtt, {
      clientId: `telemetry-gateway-${id}`,
      protocolVersion: 5,
      clean: true,
      properties: { sessionExpiryInterval: 0 },
      reconnectPeriod: 0,
    });
    await session.endAsync();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      readings: { type: "string", default: "60000" },
      batch: { type: "string", default: "10" },
      "mqtt-url": { type: "string" },
      "amqp-url": { type: "string", default: process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672" },
    },
  });
  const n = Number(values.readings);
  const batch = Number(values.batch);
  // A Mosquitto of its own unless told otherwise: a shared broker's default queue limit (1,000) drops readings.
  const broker = values["mqtt-url"] ? undefined : await startPrivateMosquitto({ maxInflight: 0 });
  const urls = { mqtt: values["mqtt-url"] ?? broker?.url ?? "", amqp: values["amqp-url"] };
  const figures: FormatFigure[] = [];
  try {
    for (const format of ["json", "senml", "sparkplug"] as const)
      figures.push(await runFormat(format, n, batch, urls));
  } finally {
    await broker?.stop();
  }
  console.table(figures);
  process.stdout.write(`${JSON.stringify({ readings: n, batch, figures })}\n`);
  if (figures.some((f) => f.stored < f.readings)) process.exitCode = 1;
}

await main();
