import { describe, expect, it } from "vitest";
import { hangRabbit, type RabbitVm, rabbitVm, resumeRabbit } from "../../scripts/rabbit-faults.js";
import {
  expectStoredExactlyOnce,
  expectStoredThroughReconnect,
  metric,
  report,
  startStream,
  until,
  untilStored,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet } from "../helpers/services.js";

const READINGS = 24_000;
const RATE = 500;
/** How long the broker's VM stays stopped (SIGSTOP) before SIGCONT. */
const HANG_MS = 30_000;
/**
 * amqp/session.ts asks for a 5 s heartbeat (RabbitMQ then sends a frame every 2.5 s at least) and reports a
 * connection silent for a whole heartbeat: 5-7.5 s after the hang. The bound is two heartbeats, for a loaded
 * machine. (amqplib itself drops the connection after two to three heartbeats, 10-15 s.)
 */
const DETECTION_BOUND_MS = 10_000;
const POLL_MS = 100;
const SIGTERM_READINGS = 6_000;
const DRAIN_TIMEOUT_MS = 5_000;
/**
 * A service stopping while the broker hangs waits its drain timeout for confirms and acks that cannot come, and at
 * worst until amqplib gives the connection up (three heartbeats, 15 s), plus the 2 s close timeout; then it exits.
 */
const STOP_WHILE_HUNG_BOUND_MS = 25_000;

/**
 * Holds the VM while the test hangs it. Declared after the pipeline, it is disposed first: a test that failed while
 * the node was stopped must not leave it stopped, or the pipeline's clean-up and `rabbitmqctl stop` would hang.
 */
function hungVmHolder(): { vm: RabbitVm | undefined } & Disposable {
  const holder = {
    vm: undefined as RabbitVm | undefined,
    [Symbol.dispose]() {
      if (holder.vm) resumeRabbit(holder.vm);
      holder.vm = undefined;
    },
  };
  return holder;
}

describe("fault: RabbitMQ hangs (its Erlang VM stopped with SIGSTOP for 30 s, then SIGCONT) mid-stream", () => {
  const brokers = privateBrokersPerFile({ rabbit: true, mosquitto: { maxQueued: 0 } });

  it("both services say within a heartbeat or two that RabbitMQ stopped answering, recover by themselves after it resumes, and every acknowledged reading is stored once", async () => {
    await using run = await brokers().pipeline("fault-rabbit-hang");
    using hung = hungVmHolder();
    const { names } = run;
    const { rabbit } = brokers();
    const services = await run.start();
    const { gateway, processor } = services;
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 1_807 });
    await untilStored(processor.httpPort, READINGS / 12);

    const hungVm = await rabbitVm(rabbit);
    const ackedAtHang = stream.acked();
    expect(ackedAtHang, "RabbitMQ must hang mid-stream").toBeLessThan(READINGS / 2);
    hangRabbit(hungVm);
    hung.vm = hungVm;
    const hungAt = Date.now();

    // Each service's readiness, polled from the moment the broker hangs: when it turned 503, and why.
    const detected: Record<string, { afterMs: number; reason: string }> = {};
    await until("both services report not ready", DETECTION_BOUND_MS + 10_000, async () => {
      for (const [name, s] of Object.entries(services)) {
        if (detected[name]) continue;
        const r = await httpGet(s.httpPort, "/readyz");
        if (r.status === 503) detected[name] = { afterMs: Date.now() - hungAt, reason: r.body.trim() };
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      return Object.keys(detected).length === 2;
    });
    for (const [name, s] of Object.entries(services)) {
      const d = detected[name]!;
      expect(d.afterMs, `${name} noticed the hung broker`).toBeLessThanOrEqual(DETECTION_BOUND_MS);
      expect(d.reason, name).toMatch(
        new RegExp(
          `^not ready: rabbitmq not answering: 127\\.0\\.0\\.1:${rabbit.port} has sent nothing for [5-9] s \\(a hung broker or a network cut\\)$`,
        ),
      );
      expect((await httpGet(s.httpPort, "/healthz")).status, name).toBe(200);
    }

    await until("the hang has lasted 30 s", HANG_MS + 5_000, async () => Date.now() - hungAt >= HANG_MS);
    const backlogWhileHung = await metric(gateway.httpPort, "telemetry_gateway_publish_backlog");
    const inflightWhileHung = await metric(gateway.httpPort, "telemetry_gateway_inflight_messages");
    const ackedWhileHung = stream.acked() - ackedAtHang;
    // While it hangs, every attempt to reconnect must end (connect timeout) rather than wait forever.
    for (const [name, s] of Object.entries(services)) {
      expect((await httpGet(s.httpPort, "/readyz")).body, `${name} once its connection is given up`).toMatch(
        /^not ready: rabbitmq not connected: .*(stopped answering: no heartbeat|did not answer within 10 s)/,
      );
    }
    const attemptsWhileHung = Object.fromEntries(
      Object.entries(services).map(([name, s]) => [
        name,
        s.logs.filter((l) => l.msg === "amqp connect failed" && /did not answer within/.test(String(l.err)))
          .length,
      ]),
    );
    resumeRabbit(hungVm);
    hung.vm = undefined;
    const resumedAt = Date.now();
    for (const [name, s] of Object.entries(services)) {
      await until(`${name} reports ready again`, 60_000, async () => {
        return (await httpGet(s.httpPort, "/readyz")).status === 200;
      });
    }
    const readyAgainAfterMs = Date.now() - resumedAt;
    for (const [name, s] of Object.entries(services)) {
      const lost = s.logs.filter((l) => l.msg === "amqp connection lost; reconnecting");
      expect(lost.length, `${name} saw its connection go`).toBeGreaterThanOrEqual(1);
      expect(String(lost[0]!.err), name).toMatch(/stopped answering: no heartbeat/);
      expect(s.proc.exitCode, `${name} kept running`).toBeNull();
    }

    const counts = await expectStoredThroughReconnect(names, stream, services, 90_000);
    report("rabbitmq hung (SIGSTOP 30 s) mid-stream", {
      ...counts,
      ackedWhenHung: ackedAtHang,
      ackedWhileHung,
      backlogWhileHung,
      inflightWhileHung,
      gatewayDetectedMs: detected.gateway?.afterMs,
      processorDetectedMs: detected.processor?.afterMs,
      gatewayReason: detected.gateway?.reason,
      processorReason: detected.processor?.reason,
      connectAttemptsTimedOutWhileHung: attemptsWhileHung,
      readyAgainAfterMs,
    });
  }, 240_000);

  it("SIGTERM while RabbitMQ hangs: both services exit 0 within the drain timeout and a heartbeat timeout, and once it resumes, started again, they store every acknowledged reading once", async () => {
    await using run = await brokers().pipeline("fault-rabbit-hang-sigterm");
    using hung = hungVmHolder();
    const n = run.names;
    const env = { DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_MS) };
    const services = await run.start(env);
    const { gateway } = services;
    const stream = startStream(n, { count: SIGTERM_READINGS, rate: RATE, seed: 1_808 });
    await untilStored(services.processor.httpPort, SIGTERM_READINGS / 10);

    const hungVm = await rabbitVm(brokers().rabbit);
    hangRabbit(hungVm);
    hung.vm = hungVm;
    for (const [name, s] of Object.entries(services)) {
      await until(`${name} reports not ready`, DETECTION_BOUND_MS + 10_000, async () => {
        return (await httpGet(s.httpPort, "/readyz")).status === 503;
      });
    }
    const inflightAtSigterm = await metric(gateway.httpPort, "telemetry_gateway_inflight_messages");
    const signalledAt = Date.now();
    const exits = await Promise.all(
      Object.values(services).map(async (s) => {
        const code = await s.stop("SIGTERM");
        return { code, afterMs: Date.now() - signalledAt };
      }),
    );
    for (const [i, name] of Object.keys(services).entries()) {
      expect(exits[i]!.code, `${name} exit code`).toBe(0);
      expect(exits[i]!.afterMs, `${name} exited in time`).toBeLessThanOrEqual(STOP_WHILE_HUNG_BOUND_MS);
    }

    resumeRabbit(hungVm);
    hung.vm = undefined;
    const [, processor] = await Promise.all([run.gateway(env), run.processor(env)]);
    const counts = await expectStoredExactlyOnce(n, stream, 90_000);
    const duplicates = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
    report("SIGTERM to both services while rabbitmq hangs", {
      ...counts,
      duplicates,
      inflightAtSigterm,
      gatewayExitMs: exits[0]!.afterMs,
      processorExitMs: exits[1]!.afterMs,
    });
  }, 180_000);
});
