import { readFileSync } from "node:fs";
import amqp from "amqplib";
import avro from "avsc";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { SchemaRegistry } from "../../schemas/index.js";
import {
  cleanup,
  countRows,
  httpGet,
  readRows,
  type Service,
  startPipeline,
  type TestNames,
  testNames,
} from "../helpers/services.js";

const TS0 = Date.UTC(2026, 0, 1);

describe("bad input is kept and explained, and the flow goes on", () => {
  let names: TestNames;
  let gateway: Service;
  let processor: Service;
  let publisher: mqtt.MqttClient;

  beforeAll(async () => {
    names = testNames("badinput");
    ({ gateway, processor } = await startPipeline(names));
    publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
  });

  afterAll(async () => {
    await publisher?.endAsync();
    await Promise.all([gateway?.stop(), processor?.stop()]);
    await cleanup(names);
  });

  it("an invalid payload goes raw to <QUEUE>.rejected with topic and reason; the readings around it are stored", async () => {
    const topic = `${names.topicPrefix}/dev-1/temperature`;
    const bad = Buffer.from('{"value":"warm"}');
    await publisher.publishAsync(topic, JSON.stringify({ value: 1, ts: TS0 }), { qos: 1 });
    await publisher.publishAsync(topic, bad, { qos: 1 });
    await publisher.publishAsync(`${names.topicPrefix}/dev ice/temperature`, '{"value":1}', { qos: 1 });
    await publisher.publishAsync(topic, JSON.stringify({ value: 2, ts: TS0 + 1 }), { qos: 1 });

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(2), { timeout: 10_000 });
    expect(readRows(names.dbPath).map((r) => r.value)).toEqual([1, 2]);

    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createChannel();
    const rejected = queueNames(names.queue).rejected;
    const first = await ch.get(rejected, { noAck: true });
    const second = await ch.get(rejected, { noAck: true });
    await conn.close();
    if (!first || !second) throw new Error("expected two messages on <QUEUE>.rejected");
    expect(first.content.equals(bad)).toBe(true);
    expect(first.properties.deliveryMode).toBe(2);
    expect(first.properties.headers).toMatchObject({
      topic,
      reason: "value must be a finite number",
      gateway_id: names.gatewayId,
    });
    expect(second.properties.headers).toMatchObject({ reason: expect.stringMatching(/device id/) });

    const metrics = await httpGet(gateway.httpPort, "/metrics");
    expect(metrics.body).toMatch(/^telemetry_gateway_rejected_total 2$/m);
    expect(metrics.body).toMatch(/^telemetry_gateway_readings_published_total 2$/m);
  });

  it("hostile payloads are each refused with a precise reason, counted, logged without flooding; good ones around them are stored", async () => {
    const topic = (device = "dev-h", sensor = "temperature") => `${names.topicPrefix}/${device}/${sensor}`;
    const hostile: [string, string, Buffer | string, RegExp][] = [
      ["invalid JSON", topic(), "{value:1}", /not valid JSON/],
      ["empty payload", topic(), "", /not valid JSON/],
      ["value as a string", topic(), '{"value":"1"}', /value must be a finite number/],
      ["value NaN", topic(), '{"value":NaN}', /not valid JSON/],
      ["value Infinity", topic(), '{"value":Infinity}', /not valid JSON/],
      ["value -Infinity", topic(), '{"value":-Infinity}', /not valid JSON/],
      ["value 1e999", topic(), '{"value":1e999}', /value must be a finite number/],
      ['value "NaN"', topic(), '{"value":"NaN"}', /value must be a finite number/],
      ["missing value", topic(), '{"ts":1767225600000}', /value is missing/],
      ["ts in 1970", topic(), '{"value":1,"ts":5}', /before 2000/],
      ["ts in 3000", topic(), '{"value":1,"ts":32503680000000}', /future/],
      [
        "ts 30 February",
        topic(),
        '{"value":1,"ts":"2025-02-30T12:00:00Z"}',
        /2025-02-30, a day that does not exist/,
      ],
      [
        "ts 31 April",
        topic(),
        '{"value":1,"ts":"2025-04-31T00:00:00Z"}',
        /2025-04-31, a day that does not exist/,
      ],
      [
        "ts hour 24",
        topic(),
        '{"value":1,"ts":"2025-06-15T24:00:00Z"}',
        /names hour 24, which does not exist/,
      ],
      [
        "ts a tenth of a ms",
        topic(),
        '{"value":1,"ts":"2025-06-15T10:00:00.1234Z"}',
        /fractional seconds finer/,
      ],
      ["oversized", topic(), Buffer.alloc(300 * 1024, 0x20), /over the 262144 byte limit/],
      ["deep nesting", topic(), `${"[".repeat(50_000)}${"]".repeat(50_000)}`, /./],
      [
        "huge array with one bad reading",
        topic(),
        JSON.stringify([...Array.from({ length: 5_000 }, (_, i) => ({ value: i })), { value: null }]),
        /^reading 5000: value must be a finite number$/,
      ],
      ["invalid UTF-8", topic(), Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), /not valid UTF-8/],
      ["device id with a space", topic("dev ice"), '{"value":1}', /device id/],
      ["device id with unicode", topic("dév"), '{"value":1}', /device id/],
      ["device id too long", topic("d".repeat(129)), '{"value":1}', /device id/],
      ["sensor with a forbidden character", topic("dev-h", "temp*"), '{"value":1}', /sensor/],
    ];
    const before = countRows(names.dbPath);
    for (const [i, [, t, payload]] of hostile.entries()) {
      await publisher.publishAsync(topic("dev-h", "good"), JSON.stringify({ value: i, ts: TS0 + i }), {
        qos: 1,
      });
      await publisher.publishAsync(t, payload, { qos: 1 });
    }
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(before + hostile.length), {
      timeout: 15_000,
    });

    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createChannel();
    const rejected: { body: Buffer; topic: unknown; reason: unknown }[] = [];
    await vi.waitFor(
      async () => {
        const m = await ch.get(queueNames(names.queue).rejected, { noAck: true });
        if (m)
          rejected.push({
            body: m.content,
            topic: m.properties.headers?.topic,
            reason: m.properties.headers?.reason,
          });
        expect(rejected).toHaveLength(hostile.length);
      },
      { timeout: 15_000, interval: 10 },
    );
    await conn.close();
    for (const [i, [name, t, payload, reason]] of hostile.entries()) {
      const got = rejected[i]!;
      expect({ name, topic: got.topic, same: got.body.equals(Buffer.from(payload)) }).toEqual({
        name,
        topic: t,
        same: true,
      });
      expect(String(got.reason), name).toMatch(reason);
    }
    const metrics = (await httpGet(gateway.httpPort, "/metrics")).body;
    // Two refused by the first test of this file, then the whole table.
    expect(metrics).toMatch(new RegExp(`^telemetry_gateway_rejected_total ${2 + hostile.length}$`, "m"));
    const lines = gateway.logs.filter((l) => String(l.msg).startsWith("rejected invalid input"));
    expect(lines.length).toBeLessThanOrEqual(11);
  });

  it("poison messages on the queue go to <QUEUE>.dead with the reason and the processor keeps going", async () => {
    const { readings, dead } = queueNames(names.queue);
    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createConfirmChannel();
    const poison: [string, Buffer][] = [
      ["empty", Buffer.alloc(0)],
      ["not avro", Buffer.from('{"value":1}')],
      [
        "unknown fingerprint",
        Buffer.concat([Buffer.from([0xc3, 0x01]), Buffer.alloc(8, 0xab), Buffer.from([2, 0x61])]),
      ],
    ];
    // A real message from the gateway's encoder, cut short in the middle of its datum.
    const whole = SchemaRegistry.load().encode({
      device_id: "dev-2",
      sensor: "humidity",
      ts: TS0,
      value: 1,
      unit: null,
      seq: null,
      gateway_id: "gw",
      received_at: TS0,
    });
    poison.push(["truncated", whole.subarray(0, whole.length - 12)]);
    for (const [id, body] of poison) ch.sendToQueue(readings, body, { persistent: true, messageId: id });
    await ch.waitForConfirms();

    const before = countRows(names.dbPath);
    const topic = `${names.topicPrefix}/dev-2/humidity`;
    await publisher.publishAsync(topic, JSON.stringify({ value: 55, ts: TS0 }), { qos: 1 });
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(before + 1), { timeout: 10_000 });

    const got: Record<string, unknown>[] = [];
    await vi.waitFor(
      async () => {
        const m = await ch.get(dead, { noAck: true });
        if (m) got.push({ id: m.properties.messageId, ...m.properties.headers });
        expect(got).toHaveLength(poison.length);
      },
      { timeout: 10_000 },
    );
    await conn.close();
    const byId = Object.fromEntries(got.map((g) => [g.id, g]));
    expect(byId.empty).toMatchObject({ "x-failure-kind": "not-avro", "x-original-queue": readings });
    expect(byId["not avro"]).toMatchObject({ "x-failure-kind": "not-avro" });
    expect(byId["unknown fingerprint"]).toMatchObject({
      "x-failure-kind": "unknown-schema",
      "x-failure-reason": "unknown schema abababababababab",
    });
    expect(byId.truncated).toMatchObject({ "x-failure-kind": "truncated" });
    const metrics = await httpGet(processor.httpPort, "/metrics");
    expect(metrics.body).toMatch(/^telemetry_processor_dead_lettered_total\{kind="not-avro"\} 2$/m);
    expect(metrics.body).toMatch(/^telemetry_processor_dead_lettered_total\{kind="truncated"\} 1$/m);
    expect((await httpGet(processor.httpPort, "/readyz")).status).toBe(200);
  });

  it("a message on the queue decodes with a plain Avro library and the .avsc from schemas/", async () => {
    await processor.stop();
    const topic = `${names.topicPrefix}/dev-3/pressure`;
    await publisher.publishAsync(topic, JSON.stringify({ value: 1013.25, ts: TS0, unit: "hPa", seq: 9 }), {
      qos: 1,
    });
    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createChannel();
    let msg: amqp.GetMessage | false = false;
    await vi.waitFor(
      async () => {
        msg = await ch.get(names.queue, { noAck: false });
        expect(msg).not.toBe(false);
      },
      { timeout: 10_000 },
    );
    const m = msg as unknown as amqp.GetMessage;
    ch.nack(m, false, true);
    await conn.close();
    // The gateway writes batch messages, reading-batch.v1.avsc (readings of reading.v2.avsc): its fingerprint.
    expect(m.content.subarray(2, 10).toString("hex")).toBe("56f04c231c7ac60e");
    const schema = JSON.parse(
      readFileSync(new URL("../../schemas/reading-batch.v1.avsc", import.meta.url), "utf8"),
    );
    const type = avro.Type.forSchema(schema);
    expect(m.content.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(m.properties.deliveryMode).toBe(2);
    expect(m.properties.contentType).toMatch(/avro/);
    expect(m.properties.messageId).toEqual(expect.any(String));
    expect(type.fromBuffer(m.content.subarray(10))).toEqual({
      readings: [
        {
          device_id: "dev-3",
          sensor: "pressure",
          ts: TS0,
          value: 1013.25,
          unit: "hPa",
          seq: 9,
          gateway_id: names.gatewayId,
          received_at: expect.any(Number),
          quality: "good",
          tags: {},
        },
      ],
    });
  });
});
