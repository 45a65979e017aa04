import { describe, expect, it } from "vitest";
import {
  expectStoredThroughReconnect,
  metric,
  report,
  startStream,
  until,
  untilStored,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet } from "../helpers/services.js";

const READINGS = 8_000;
const RATE = 1_000;
/** Readings the sensors send while RabbitMQ is down (2 s of the stream). */
const READINGS_WHILE_DOWN = 2_000;

describe("fault: RabbitMQ stops and starts again mid-stream (rabbitmqctl stop_app / start_app)", () => {
  const brokers = privateBrokersPerFile({ rabbit: true, mosquitto: { maxQueued: 0 } });

  it("both services report not-ready while RabbitMQ is down, reconnect by themselves, report ready again, and nothing is lost", async () => {
    await using run = await brokers().pipeline("fault-rabbit");
    const { names } = run;
    const { rabbit } = brokers();
    const services = await run.start();
    const { gateway, processor } = services;
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 303 });
    await untilStored(processor.httpPort, READINGS / 16, 20_000);

    const ackedAtStop = stream.acked();
    expect(ackedAtStop, "RabbitMQ must stop mid-stream").toBeLessThan(READINGS);
    await rabbit.stopApp();
    const stoppedAt = Date.now();
    for (const [name, s] of Object.entries(services)) {
      await until(
        `${name} reports not ready`,
        10_000,
        async () => (await httpGet(s.httpPort, "/readyz")).status === 503,
      );
      expect((await httpGet(s.httpPort, "/readyz")).body, name).toMatch(/not ready: rabbitmq not connected/);
      expect((await httpGet(s.httpPort, "/healthz")).status, name).toBe(200);
    }
    const notReadyAfterMs = Date.now() - stoppedAt;
    // Down for as long as it takes the sensors to send a couple of seconds of readings, which the gateway
    // cannot hand on and must not lose.
    await until("the sensors have sent readings while RabbitMQ is down", 30_000, async () => {
      return stream.acked() - ackedAtStop >= READINGS_WHILE_DOWN;
    });
    const backlogWhileDown = await metric(gateway.httpPort, "telemetry_gateway_publish_backlog");
    const inflightWhileDown = await metric(gateway.httpPort, "telemetry_gateway_inflight_messages");

    const ackedWhileDown = stream.acked() - ackedAtStop;
    await rabbit.startApp();
    const startedAt = Date.now();
    for (const [name, s] of Object.entries(services)) {
      await until(
        `${name} reports ready again`,
        30_000,
        async () => (await httpGet(s.httpPort, "/readyz")).status === 200,
      );
    }
    const readyAgainAfterMs = Date.now() - startedAt;
    for (const [name, s] of Object.entries(services)) {
      expect(
        s.logs.some((l) => l.msg === "amqp connection lost; reconnecting"),
        name,
      ).toBe(true);
      expect(s.logs.filter((l) => l.msg === "amqp connected").length, name).toBeGreaterThanOrEqual(2);
      expect(s.proc.exitCode, `${name} kept running`).toBeNull();
    }

    // One processor throughout; what it had committed but could not ack before the connection went comes again
    // and must count as a duplicate, not as a stored row.
    const counts = await expectStoredThroughReconnect(names, stream, services);
    report("rabbitmq stop_app/start_app mid-stream", {
      ...counts,
      ackedWhenStopped: ackedAtStop,
      ackedWhileDown,
      backlogWhileDown,
      inflightWhileDown,
      notReadyAfterMs,
      readyAgainAfterMs,
      rabbitStartupMs: rabbit.startupMs,
    });
  });
});
