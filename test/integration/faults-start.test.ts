import amqp from "amqplib";
import { afterEach, describe, expect, it } from "vitest";
import { declareTopology, type QueueType, queueNames } from "../../amqp/topology.js";
import { freePort } from "../../scripts/private-brokers.js";
import { report, until } from "../helpers/fault-stream.js";
import { cleanup, httpGet, type TestNames, testNames } from "../helpers/services.js";
import { spawnService, type UnstartedService } from "../helpers/unstarted-service.js";

/** Only guards against a process that never exits; the exit itself is what is asserted. */
const EXIT_BOUND_MS = 10_000;
const PASSWORD = "not-the-password-4f1c9e";

type Command = "gateway" | "processor";

/** Resolves with the exit code and how long the process took to exit after `signal`. */
async function stopWith(service: UnstartedService, signal: NodeJS.Signals = "SIGTERM") {
  const sentAt = Date.now();
  const code = await Promise.race([
    service.kill(signal),
    new Promise<"still running">((resolve) =>
      setTimeout(() => resolve("still running"), EXIT_BOUND_MS).unref(),
    ),
  ]);
  return { code, exitMs: Date.now() - sentAt };
}

/** `/readyz` of a service whose health endpoint may not listen yet (undefined then). */
async function readyz(s: UnstartedService): Promise<{ status: number; body: string } | undefined> {
  return httpGet(s.httpPort, "/readyz").catch(() => undefined);
}

const failedAttempts = (s: UnstartedService) => s.logs.filter((l) => l.msg === "amqp connect failed");

/** Declares the test's three queues as `type`, as a service configured with it would. */
async function declareAs(names: TestNames, type: QueueType): Promise<void> {
  const conn = await amqp.connect(names.amqpUrl);
  try {
    await declareTopology(await conn.createChannel(), names.queue, type);
  } finally {
    await conn.close();
  }
}

async function deleteQueues(names: TestNames): Promise<void> {
  const conn = await amqp.connect(names.amqpUrl);
  try {
    const ch = await conn.createChannel();
    for (const q of Object.values(queueNames(names.queue))) await ch.deleteQueue(q);
  } finally {
    await conn.close();
  }
}

/** The one service and names of the running test, killed and cleaned up after it. */
let service: UnstartedService | undefined;
let names: TestNames | undefined;

afterEach(async () => {
  await service?.kill("SIGKILL");
  service = undefined;
  if (names) await cleanup(names);
  names = undefined;
});

describe("fault: RabbitMQ refuses a service at start (wrong password, closed port), then SIGTERM", () => {
  const faults = [
    {
      label: "refuses the login (wrong password)",
      url: async () => `amqp://guest:${PASSWORD}@127.0.0.1:5672`,
      reason: /refused the login \(ACCESS_REFUSED\): check the user name and password of AMQP_URL/,
      attempts: 1,
    },
    {
      label: "port is closed",
      url: async () => `amqp://guest:${PASSWORD}@127.0.0.1:${await freePort()}`,
      reason: /refused the connection \(ECONNREFUSED: RabbitMQ down or a wrong port\)/,
      attempts: 3,
    },
  ];

  for (const command of ["processor", "gateway"] as const satisfies readonly Command[]) {
    for (const fault of faults) {
      it(`a ${command} whose RabbitMQ ${fault.label} retries, says why in /readyz and once per attempt in the log, never prints the password, and exits 0 on SIGTERM`, async () => {
        names = testNames(`start-${command}`);
        const url = await fault.url();
        const broker = `127.0.0.1:${new URL(url).port}`;
        const s = await spawnService(command, { ...names.env, AMQP_URL: url });
        service = s;

        await until(`${command} logs ${fault.attempts} failed attempts`, 20_000, async () => {
          return failedAttempts(s).length >= fault.attempts;
        });
        const ready = await httpGet(s.httpPort, "/readyz");
        expect(ready.status).toBe(503);
        expect(ready.body).toMatch(/^not ready: rabbitmq not connected: /);
        expect(ready.body).toContain(broker);
        expect(ready.body).toMatch(fault.reason);
        expect((await httpGet(s.httpPort, "/healthz")).status).toBe(200);
        const attempts = failedAttempts(s);
        for (const line of attempts) {
          expect(line.broker).toBe(broker);
          expect(line.err).toMatch(fault.reason);
          expect(line.retryInMs).toBeGreaterThan(0);
        }
        // One line per attempt, each numbered (the input and the sink of a service may each have a session).
        expect(attempts.map((l) => l.attempt)).toContain(fault.attempts);

        const { code, exitMs } = await stopWith(s);
        expect(code, s.output()).toBe(0);
        const msgs = s.logs.map((l) => l.msg);
        expect(msgs).toContain("signal received before the service was up; stopping the start");
        expect(msgs).toContain("stopped before the service was up");
        expect(msgs.join("\n")).not.toMatch(/did not give up|handle left open/);
        expect(s.output()).not.toContain(PASSWORD);
        report(`${command}: RabbitMQ ${fault.label}, SIGTERM before up`, {
          failedAttempts: attempts.length,
          exitCode: code,
          exitMs,
        });
      });
    }
  }
});

describe("mistake at start: the queues exist with the other queue type", () => {
  const cases: { command: Command; existing: QueueType; configured: QueueType }[] = [
    { command: "processor", existing: "classic", configured: "quorum" },
    { command: "gateway", existing: "quorum", configured: "classic" },
  ];
  for (const { command, existing, configured } of cases) {
    it(`a ${command} with QUEUE_TYPE=${configured} meeting ${existing} queues says so in one line (/readyz and log), retries slowly, and is ready once the queues are deleted, without a restart`, async () => {
      names = testNames(`mismatch-${command}`);
      await declareAs(names, existing);
      const s = await spawnService(command, { ...names.env, QUEUE_TYPE: configured });
      service = s;
      const line =
        `queue ${names.queue}.dead exists as ${existing} but QUEUE_TYPE is ${configured}: delete it (after moving ` +
        `its messages) so that it is declared again, or set QUEUE_TYPE=${existing}`;

      await until(`${command} reports the mismatch`, 20_000, async () => {
        return failedAttempts(s).length > 0 && (await readyz(s))?.body === `not ready: rabbitmq: ${line}\n`;
      });
      const failed = failedAttempts(s);
      for (const l of failed) {
        expect(l.err).toBe(line);
        expect(l.retryInMs).toBe(10_000);
      }

      await deleteQueues(names);
      const deletedAt = Date.now();
      await until(`${command} is ready once the queues are gone`, 30_000, async () => {
        return (await readyz(s))?.status === 200;
      }).catch((err: Error) => {
        throw new Error(`${err.message}; its output:\n${s.output()}`);
      });
      const healedMs = Date.now() - deletedAt;
      expect(s.proc.exitCode, `${command} kept running`).toBeNull();
      // The service declared them again with the configured type: declaring them so is accepted.
      await declareAs(names, configured);

      const { code, exitMs } = await stopWith(s);
      expect(code, s.output()).toBe(0);
      report(`${command}: ${existing} queues where QUEUE_TYPE=${configured}`, {
        failedAttempts: failed.length,
        healedMs,
        exitMs,
      });
    });
  }
});
