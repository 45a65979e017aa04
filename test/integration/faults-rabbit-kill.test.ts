import { describe, expect, it } from "vitest";
import type { PrivateRabbit } from "../../scripts/private-brokers.js";
import { killRabbit, rabbitVm, restartRabbit } from "../../scripts/rabbit-faults.js";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  expectStoredThroughReconnect,
  metric,
  report,
  startStream,
  until,
  untilStored,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet, type Service, untilReady } from "../helpers/services.js";

const READINGS = 8_000;
const RATE = 1_000;
/** Readings the sensors send while RabbitMQ is dead, which the gateway must not lose. */
const READINGS_WHILE_DEAD = 1_000;

/** Messages on `queue` by `rabbitmqctl list_queues` (the node's own count, no AMQP connection needed). */
async function queueDepth(rabbit: PrivateRabbit, queue: string): Promise<number> {
  const out = await rabbit.ctl("list_queues", "name", "messages", "--no-table-headers", "--quiet");
  const line = out.split("\n").find((l) => l.split("\t")[0] === queue);
  return line ? Number(line.split("\t")[1]) : 0;
}

/** Waits until `s` answers /readyz with 503 and returns how long that took from `since`, and the reason. */
async function untilNotReady(name: string, s: Service, since: number) {
  let reason = "";
  await until(`${name} reports not ready`, 15_000, async () => {
    const r = await httpGet(s.httpPort, "/readyz");
    reason = r.body.trim();
    return r.status === 503;
  });
  return { afterMs: Date.now() - since, reason };
}

async function untilReadyAgain(services: Record<string, Service>, since: number): Promise<number> {
  for (const [name, s] of Object.entries(services)) {
    await until(`${name} reports ready again`, 60_000, async () => {
      return (await httpGet(s.httpPort, "/readyz")).status === 200;
    });
  }
  return Date.now() - since;
}

describe("fault: RabbitMQ killed hard (SIGKILL of its Erlang VM) and started again on the same directory", () => {
  const brokers = privateBrokersPerFile({ rabbit: true, mosquitto: { maxQueued: 0 } });

  it("confirmed readings waiting on the quorum queue are all there after the kill, and each is stored once", async () => {
    await using run = await brokers().pipeline("fault-rabbit-kill-queue");
    const n = run.names;
    const { rabbit } = brokers();
    // One reading per message, so that the queue's message count can be compared with the readings confirmed.
    const gw = await run.gateway({ PUBLISH_BATCH: "1" });
    await untilReady(gw);
    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 4_401 });
    await until("half the stream is confirmed on the queue", 30_000, async () => {
      return (await metric(gw.httpPort, "telemetry_gateway_readings_published_total")) >= READINGS / 2;
    });

    const vm = await rabbitVm(rabbit);
    const confirmedAtKill = await metric(gw.httpPort, "telemetry_gateway_readings_published_total");
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "RabbitMQ must die mid-stream").toBeLessThan(READINGS);
    await killRabbit(rabbit, vm);
    const killedAt = Date.now();
    const detected = await untilNotReady("gateway", gw, killedAt);
    expect(detected.reason).toMatch(
      new RegExp(`^not ready: rabbitmq not (connected|answering): 127\\.0\\.0\\.1:${rabbit.port} `),
    );
    await until("the sensors have sent readings while RabbitMQ is dead", 30_000, async () => {
      return stream.acked() - ackedAtKill >= READINGS_WHILE_DEAD;
    });

    await restartRabbit(rabbit, vm);
    const restartedAt = Date.now();
    // Nothing consumes this queue yet: every message confirmed before the kill must come back from disk (the
    // gateway may add more once it reconnects, never fewer). A quorum queue may count 0 while it recovers.
    let depthAfterRestart = 0;
    await until("the queue holds every message confirmed before the kill", 30_000, async () => {
      depthAfterRestart = await queueDepth(rabbit, n.queue);
      return depthAfterRestart >= confirmedAtKill;
    });
    const readyAgainAfterMs = await untilReadyAgain({ gateway: gw }, restartedAt);
    expect(gw.logs.some((l) => l.msg === "amqp connection lost; reconnecting")).toBe(true);

    const proc = await run.processor();
    const counts = await expectStoredExactlyOnce(n, stream, 60_000);
    const { duplicates } = await expectDeliveriesAccounted(proc, counts.stored);
    report("rabbitmq SIGKILL with confirmed readings on the queue (no consumer)", {
      ...counts,
      duplicates,
      confirmedAtKill,
      depthAfterRestart,
      ackedAtKill,
      gatewayDetectedMs: detected.afterMs,
      gatewayReason: detected.reason,
      readyAgainAfterMs,
    });
  }, 180_000);

  it("both services ride through a SIGKILL of RabbitMQ mid-stream: not ready while it is dead, ready again after its restart, every acknowledged reading stored once", async () => {
    await using run = await brokers().pipeline("fault-rabbit-kill-stream");
    const n = run.names;
    const { rabbit } = brokers();
    const services = await run.start();
    const { gateway, processor } = services;
    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 4_402 });
    await untilStored(processor.httpPort, READINGS / 8);

    const vm = await rabbitVm(rabbit);
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "RabbitMQ must die mid-stream").toBeLessThan(READINGS);
    await killRabbit(rabbit, vm);
    const killedAt = Date.now();
    const detected: Record<string, { afterMs: number; reason: string }> = {};
    for (const [name, s] of Object.entries(services)) detected[name] = await untilNotReady(name, s, killedAt);
    for (const [name, d] of Object.entries(detected)) {
      expect(d.reason, name).toMatch(
        new RegExp(`^not ready: rabbitmq not (connected|answering): 127\\.0\\.0\\.1:${rabbit.port} `),
      );
    }
    await until("the sensors have sent readings while RabbitMQ is dead", 30_000, async () => {
      return stream.acked() - ackedAtKill >= READINGS_WHILE_DEAD;
    });
    const backlogWhileDead = await metric(gateway.httpPort, "telemetry_gateway_publish_backlog");

    await restartRabbit(rabbit, vm);
    const readyAgainAfterMs = await untilReadyAgain(services, Date.now());
    for (const [name, s] of Object.entries(services)) {
      expect(
        s.logs.some((l) => l.msg === "amqp connection lost; reconnecting"),
        name,
      ).toBe(true);
      expect(s.proc.exitCode, `${name} kept running`).toBeNull();
    }

    const counts = await expectStoredThroughReconnect(n, stream, services, 60_000);
    report("rabbitmq SIGKILL mid-stream, both services running", {
      ...counts,
      ackedAtKill,
      backlogWhileDead,
      gatewayDetectedMs: detected.gateway?.afterMs,
      processorDetectedMs: detected.processor?.afterMs,
      gatewayReason: detected.gateway?.reason,
      processorReason: detected.processor?.reason,
      readyAgainAfterMs,
    });
  }, 180_000);
});
