import { readFileSync } from "node:fs";
import amqp from "amqplib";
import mqtt from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../../scripts/private-brokers.js";
import { faultNames, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { cleanup, readRows, type Service, startService, type TestNames } from "../helpers/services.js";

/** Readings the sensors publish while the gateway is down, all PUBACKed before the broker is killed. */
const READINGS = 3_000;
const RATE = 1_000;
const TEST_TIMEOUT_MS = 300_000;
const DELIVERY_TIMEOUT_MS = 60_000;

/**
 * Mosquitto 2.0's persistence settings under test. Mosquitto writes its whole in-memory database to
 * `mosquitto.db`: every `autosave_interval` seconds, or with `autosave_on_changes true` after that many changes
 * (messages stored, subscriptions, retained messages), and on a clean exit. What a SIGKILL finds unsaved is gone,
 * although the sensors got their PUBACK for it.
 */
const SETTINGS = {
  "Mosquitto's default (autosave_interval 1800)": ["autosave_interval 1800", "autosave_on_changes false"],
  "autosave_interval 1 (every second)": ["autosave_interval 1", "autosave_on_changes false"],
  "autosave_on_changes true, autosave_interval 1 (after every change)": [
    "autosave_interval 1",
    "autosave_on_changes true",
  ],
} as const satisfies Record<string, readonly string[]>;
type Setting = keyof typeof SETTINGS;
const ZERO_LOSS: Setting = "autosave_on_changes true, autosave_interval 1 (after every change)";
const DEFAULT: Setting = "Mosquitto's default (autosave_interval 1800)";

interface Recorded {
  deviceId: string;
  sensor: string;
  ts: number;
}

const key = (device: string, sensor: string, ts: number) => `${device}\0${sensor}\0${ts}`;

/** Waits until the queue of `names` is empty and neither service holds anything in flight. */
async function drained(names: TestNames, gateway: Service, processor: Service): Promise<boolean> {
  const conn = await amqp.connect(names.amqpUrl);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createChannel();
    const ready = (await ch.checkQueue(queueNames(names.queue).readings)).messageCount;
    const gatewayInflight = await metric(gateway.httpPort, "telemetry_gateway_inflight_messages");
    const processorInflight = await metric(processor.httpPort, "telemetry_processor_inflight_deliveries");
    return ready === 0 && gatewayInflight === 0 && processorInflight === 0;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe("fault: Mosquitto killed with SIGKILL while it holds readings for the offline gateway", () => {
  const brokers: PrivateMosquitto[] = [];
  const services: Service[] = [];
  const allNames: TestNames[] = [];

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    for (const names of allNames) await cleanup(names).catch(() => undefined);
    await Promise.all(brokers.map((b) => b.stop()));
  });

  /**
   * The gateway subscribes once (its persistent session) and goes down; the broker is restarted cleanly so that the
   * session is on disk; the sensors publish READINGS, all PUBACKed and queued for the gateway; the broker is killed
   * with SIGKILL at once and started again; gateway and processor come up and take what the broker still has. A
   * sentinel published after the restart, behind everything queued, says when that is all delivered.
   */
  async function killWithQueuedReadings(setting: Setting, seed: number) {
    const mosquitto = await startPrivateMosquitto({
      maxQueued: 0,
      persistence: true,
      extraConfig: SETTINGS[setting],
    });
    brokers.push(mosquitto);
    const names = faultNames(`mqtt-kill-${seed}`, { mqttUrl: mosquitto.url });
    allNames.push(names);

    const first = await startService("gateway", names.env);
    services.push(first);
    expect(await first.stop(), "the gateway stopped cleanly").toBe(0);
    await mosquitto.restart();

    const stream = startStream(names, { count: READINGS, rate: RATE, seed });
    await until("every reading has its PUBACK", 60_000, async () => stream.acked() >= READINGS);
    const pid = mosquitto.pid;
    await mosquitto.kill9();
    const summary = await stream.done.catch(() => undefined);
    await mosquitto.restart();
    expect(mosquitto.pid, "a new broker process").not.toBe(pid);

    const [gateway, processor] = await Promise.all([
      startService("gateway", names.env),
      startService("processor", names.env),
    ]);
    services.push(gateway, processor);
    const sentinel = { device: "sentinel", sensor: "probe", ts: Date.now() };
    const client = await mqtt.connectAsync(mosquitto.url, { reconnectPeriod: 0 });
    await client.publishAsync(
      `${names.topicPrefix}/${sentinel.device}/${sentinel.sensor}`,
      JSON.stringify({ value: 1, ts: sentinel.ts }),
      { qos: 1 },
    );
    await client.endAsync();
    await until("the sentinel is stored", DELIVERY_TIMEOUT_MS, async () => {
      return readRows(names.dbPath).some((r) => r.device_id === sentinel.device);
    });
    await until("everything the broker delivered is stored", DELIVERY_TIMEOUT_MS, () =>
      drained(names, gateway, processor),
    );

    const acked = readFileSync(stream.recordPath, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Recorded);
    const stored = new Set(readRows(names.dbPath).map((r) => key(r.device_id, r.sensor, r.ts)));
    const lost = acked.filter((a) => !stored.has(key(a.deviceId, a.sensor, a.ts))).length;
    const figures = {
      sent: summary?.sent ?? READINGS,
      acknowledged: acked.length,
      stored: acked.length - lost,
      lost,
      duplicates: await metric(processor.httpPort, "telemetry_processor_duplicates_total"),
      publishRate: summary?.messagesPerSecond ?? null,
    };
    report(`mosquitto SIGKILL with ${READINGS} readings queued for the offline gateway, ${setting}`, figures);
    await Promise.all([gateway.stop(), processor.stop()]);
    await mosquitto.stop();
    return figures;
  }

  it(
    "with Mosquitto's default autosave a SIGKILL loses acknowledged readings; with autosave_on_changes true and autosave_interval 1 it loses none",
    async () => {
      const results: Partial<Record<Setting, { lost: number; acknowledged: number }>> = {};
      let seed = 2_100;
      for (const setting of Object.keys(SETTINGS) as Setting[])
        results[setting] = await killWithQueuedReadings(setting, seed++);
      expect(results[DEFAULT]?.acknowledged).toBe(READINGS);
      expect(results[DEFAULT]?.lost, "the kill hit what the default keeps only in memory").toBeGreaterThan(0);
      expect(results[ZERO_LOSS]?.acknowledged).toBe(READINGS);
      expect(results[ZERO_LOSS]?.lost, `${ZERO_LOSS}: acknowledged readings lost`).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
