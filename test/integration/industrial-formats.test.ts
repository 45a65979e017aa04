import { join } from "node:path";
import amqp from "amqplib";
import mqtt from "mqtt";
import sparkplugPayload from "sparkplug-payload";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { RFC8428 } from "../fixtures/senml-rfc8428.js";
import {
  cleanup,
  httpGet,
  readRows,
  type Service,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";

// Eclipse Tahu's encoder plays the edge node: the gateway's decoder is checked against an independent one.
const tahu = sparkplugPayload.get("spBv1.0");
if (!tahu) throw new Error("sparkplug-payload has no spBv1.0 codec");
type Payload = Parameters<typeof tahu.encodePayload>[0];
type Metric = NonNullable<Payload["metrics"]>[number];

const T0 = Date.UTC(2026, 0, 1);
const WAIT = { timeout: 20_000, interval: 100 };
const DATA_MESSAGES = 40;

describe("industrial sensors as they publish: Sparkplug B and SenML", () => {
  let names: TestNames;
  let group: string;
  let gateway: Service;
  let processor: Service;
  let node: mqtt.MqttClient;
  /** What a subscriber sees on the node's NCMD topic, decoded with Tahu. */
  const commands: Payload[] = [];
  let seq = 0;
  const topic = (type: string, device?: string) =>
    `spBv1.0/${group}/${type}/edge-1${device ? `/${device}` : ""}`;
  const send = (type: string, payload: Payload, device?: string) =>
    node.publishAsync(topic(type, device), Buffer.from(tahu.encodePayload(payload)), { qos: 1 });
  const unit = (u: string) => ({ engUnit: { type: "String" as const, value: u } });

  /** NBIRTH and DBIRTH as an edge node sends them when it comes online or is asked to rebirth. */
  async function births(ts: number): Promise<void> {
    seq = 0;
    const nodeMetrics: Metric[] = [
      { name: "Inputs/Temperature", alias: 1, type: "Float", value: 20.5, properties: unit("°C") },
      { name: "Outputs/Running", alias: 2, type: "Boolean", value: true },
      { name: "Label", alias: 3, type: "String", value: "line A" },
      { name: "Count", alias: 4, type: "Int32", value: -1 },
    ];
    await send("NBIRTH", { timestamp: ts, seq: seq++, metrics: nodeMetrics });
    const deviceMetrics: Metric[] = [
      { name: "Pressure", alias: 1, type: "Double", value: 1.5, properties: unit("bar") },
    ];
    await send("DBIRTH", { timestamp: ts, seq: seq++, metrics: deviceMetrics }, "pump-2");
  }

  const rejected = async (): Promise<amqp.GetMessage[]> => {
    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createChannel();
    const got: amqp.GetMessage[] = [];
    for (;;) {
      const m = await ch.get(queueNames(names.queue).rejected, { noAck: true });
      if (!m) break;
      got.push(m);
    }
    await conn.close();
    return got;
  };
  const metric = async (name: string) => {
    const body = (await httpGet(gateway.httpPort, "/metrics")).body;
    return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(body)?.[1] ?? Number.NaN);
  };
  const rowsOf = (device: string) => readRows(names.dbPath).filter((r) => r.device_id === device);

  beforeAll(async () => {
    names = testNames("industrial");
    group = `g-${names.id}`;
    [gateway, processor] = await Promise.all([
      startService("gateway", { ...names.env, SPARKPLUG_GROUPS: group }),
      startService("processor", names.env),
    ]);
    await untilReady(gateway, processor);
    node = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    await node.subscribeAsync(`spBv1.0/${group}/NCMD/edge-1`, { qos: 1 });
    node.on("message", (_topic, payload) => commands.push(tahu.decodePayload(payload)));
  });

  afterAll(async () => {
    await node?.endAsync();
    await Promise.all([gateway?.stop(), processor?.stop()]);
    await cleanup(names);
  });

  it("a node and its device with births, 40 data messages by alias, a String metric, an unknown alias and a seq gap", async () => {
    await births(T0);
    for (let i = 0; i < DATA_MESSAGES; i++) {
      const ts = T0 + 1 + i;
      if (i % 2 === 0) {
        const metrics: Metric[] = [
          { alias: 1, timestamp: ts, type: "Float", value: 20 + i / 4 },
          { alias: 2, timestamp: ts, type: "Boolean", value: i % 4 === 0 },
          { alias: 3, timestamp: ts, type: "String", value: `text ${i}` },
          { alias: 4, timestamp: ts, type: "Int32", value: -i },
        ];
        await send("NDATA", { timestamp: ts, seq: seq++, metrics });
      } else {
        await send(
          "DDATA",
          { timestamp: ts, seq: seq++, metrics: [{ alias: 1, type: "Double", value: i }] },
          "pump-2",
        );
      }
    }
    await send("NDATA", {
      timestamp: T0 + 100,
      seq: seq++,
      metrics: [{ alias: 99, type: "Float", value: 1 }],
    });
    seq += 3; // three messages lost on the way
    await send("NDATA", {
      timestamp: T0 + 101,
      seq: seq++,
      metrics: [{ alias: 1, type: "Float", value: 99.5 }],
    });

    // 20 node messages of 3 numbers, 20 device messages of 1, births (3 + 1), the value after the gap.
    await vi.waitFor(() => expect(readRows(names.dbPath)).toHaveLength(20 * 3 + 20 + 4 + 1), WAIT);
    const temperature = rowsOf("edge-1").filter((r) => r.sensor === "Inputs_Temperature");
    expect(temperature).toHaveLength(22);
    expect(temperature.slice(0, 3).map((r) => [r.ts, r.value, r.unit])).toEqual([
      [T0, 20.5, "°C"],
      [T0 + 1, 20, "°C"],
      [T0 + 3, 20.5, "°C"],
    ]);
    expect(temperature.at(-1)).toMatchObject({ ts: T0 + 101, value: 99.5 });
    expect(JSON.parse(temperature[0]?.tags ?? "{}")).toEqual({ sparkplug_group: group });
    expect(
      rowsOf("edge-1")
        .filter((r) => r.sensor === "Count")
        .map((r) => r.value)
        .slice(0, 3),
    ).toEqual([-1, 0, -2]);
    expect(rowsOf("edge-1").some((r) => r.sensor === "Label")).toBe(false);
    const pressure = rowsOf("edge-1.pump-2");
    expect(pressure).toHaveLength(21);
    expect(pressure[1]).toMatchObject({ sensor: "Pressure", ts: T0 + 2, value: 1, unit: "bar" });

    const refused = await rejected();
    expect(refused.map((m) => m.properties.headers?.reason)).toEqual([expect.stringMatching(/alias 99/)]);
    expect(refused[0]?.properties.headers?.topic).toBe(topic("NDATA"));
    await vi.waitFor(() => expect(commands).toHaveLength(1), WAIT);
    expect(commands[0]?.metrics).toMatchObject([
      { name: "Node Control/Rebirth", type: "Boolean", value: true },
    ]);
    expect(await metric("telemetry_gateway_sparkplug_seq_gaps_total")).toBe(1);
    expect(await metric('telemetry_gateway_values_not_stored_total{format="sparkplug"}')).toBe(21);
  });

  it("after a gateway restart, data by alias is refused until the node answers the rebirth request, then resolved", async () => {
    await gateway.stop();
    gateway = await startService("gateway", { ...names.env, SPARKPLUG_GROUPS: group });
    await untilReady(gateway);
    const before = commands.length;
    const rows = readRows(names.dbPath).length;
    // The node answers a rebirth request as Sparkplug says: births again, then data by alias.
    const answered = new Promise<void>((resolve) => {
      node.once("message", () => {
        void births(T0 + 1_000).then(async () => {
          await send("NDATA", {
            timestamp: T0 + 1_001,
            seq: seq++,
            metrics: [{ alias: 1, type: "Float", value: 30.25 }],
          });
          resolve();
        });
      });
    });
    await send("NDATA", {
      timestamp: T0 + 500,
      seq: seq++,
      metrics: [{ alias: 1, type: "Float", value: 1 }],
    });
    await answered;
    expect(commands.length).toBe(before + 1);

    await vi.waitFor(() => expect(readRows(names.dbPath)).toHaveLength(rows + 3 + 1 + 1), WAIT);
    expect(rowsOf("edge-1").find((r) => r.ts === T0 + 1_001)).toMatchObject({
      sensor: "Inputs_Temperature",
      value: 30.25,
      unit: "°C",
    });
    expect(rowsOf("edge-1").some((r) => r.ts === T0 + 500)).toBe(false);
    const refused = await rejected();
    expect(refused.map((m) => m.properties.headers?.reason)).toEqual([
      expect.stringMatching(/NBIRTH this gateway has not seen/),
    ]);
  });

  it("with a spool, the alias maps survive a clean restart: data by alias is stored with no rebirth", async () => {
    const env = { ...names.env, SPARKPLUG_GROUPS: group, SPOOL_PATH: join(names.dir, "spool") };
    await gateway.stop();
    gateway = await startService("gateway", env);
    await untilReady(gateway);
    await births(T0 + 2_000);
    await vi.waitFor(() => expect(rowsOf("edge-1").some((r) => r.ts === T0 + 2_000)).toBe(true), WAIT);
    await gateway.stop();
    gateway = await startService("gateway", env);
    await untilReady(gateway);
    const before = commands.length;
    await send("NDATA", {
      timestamp: T0 + 2_001,
      seq: seq++,
      metrics: [{ alias: 1, type: "Float", value: 40.5 }],
    });
    await vi.waitFor(() => expect(rowsOf("edge-1").some((r) => r.ts === T0 + 2_001)).toBe(true), WAIT);
    expect(rowsOf("edge-1").find((r) => r.ts === T0 + 2_001)).toMatchObject({
      sensor: "Inputs_Temperature",
      value: 40.5,
      unit: "°C",
    });
    expect(commands.length).toBe(before);
    expect(await rejected()).toEqual([]);
  });

  it("RFC 8428's SenML examples are stored as the RFC reads them: names, times, units", async () => {
    const publish = (text: string) =>
      node.publishAsync(`${names.topicPrefix}/dev-senml/senml`, text, { qos: 1 });
    await publish(RFC8428.multipleMeasurements);
    await publish(RFC8428.multipleDataTypes);
    const bt = 1_276_020_076_001;
    await vi.waitFor(() => expect(rowsOf("dev-senml")).toHaveLength(9), WAIT);
    expect(rowsOf("dev-senml").map((r) => [r.sensor, r.ts, r.value, r.unit])).toEqual([
      ["urn:dev:ow:10e2073a01080063:open", expect.any(Number), 0, null],
      ["urn:dev:ow:10e2073a01080063:temp", expect.any(Number), 23.1, "Cel"],
      ...[1.2, 1.3, 1.4, 1.5, 1.6].map((v, i) => [
        "urn:dev:ow:10e2073a0108006:current",
        bt - (5 - i) * 1000,
        v,
        "A",
      ]),
      ["urn:dev:ow:10e2073a0108006:current", bt, 1.7, "A"],
      ["urn:dev:ow:10e2073a0108006:voltage", bt, 120.1, "V"],
    ]);
    // Without a time a record is "now": the gateway's receive time.
    for (const r of rowsOf("dev-senml").slice(0, 2)) expect(r.ts).toBe(r.received_at);
    expect(await metric('telemetry_gateway_values_not_stored_total{format="senml"}')).toBe(2);
  });
});
