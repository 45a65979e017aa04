import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  rssKiB,
  startStream,
} from "../helpers/fault-stream.js";
import {
  type PrivateMosquitto,
  type PrivateRabbit,
  startPrivateMosquitto,
  startPrivateRabbit,
} from "../helpers/private-brokers.js";
import { cleanup, httpGet, type Service, startService, type TestNames } from "../helpers/services.js";

const execFileAsync = promisify(execFile);
const INFLIGHT = 200;

describe("fault: RabbitMQ blocks publishers (memory alarm)", () => {
  let rabbit: PrivateRabbit;
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  let gateway: Service | undefined;
  let processor: Service | undefined;

  beforeAll(async () => {
    [rabbit, mosquitto] = await Promise.all([startPrivateRabbit(), startPrivateMosquitto()]);
    names = faultNames("blocked", { amqpUrl: rabbit.url, mqttUrl: mosquitto.url });
  }, 90_000);

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names).catch(() => undefined);
    await Promise.all([rabbit?.stop(), mosquitto?.stop()]);
  });

  it("the gateway holds PUBACKs while blocked, keeps memory bounded, and resumes with nothing lost", async () => {
    const env = { ...names.env, GATEWAY_INFLIGHT: String(INFLIGHT) };
    [processor, gateway] = await Promise.all([startService("processor", env), startService("gateway", env)]);
    const gw = gateway;
    // Long enough that the gateway is still publishing when the alarm is raised (rabbitmqctl is slow under load).
    const stream = startStream(names, { count: 12_000, rate: 1_000, seed: 5 });
    await vi.waitFor(
      async () =>
        expect(await metric(gw.httpPort, "telemetry_gateway_readings_published_total")).toBeGreaterThan(500),
      {
        timeout: 15_000,
      },
    );

    const watermark = (v: string) =>
      execFileAsync("rabbitmqctl", ["-n", rabbit.node, "set_vm_memory_high_watermark", v]);
    await watermark("0.0000001");
    await vi.waitFor(
      async () => {
        const r = await httpGet(gw.httpPort, "/readyz");
        expect(r.status).toBe(503);
        expect(r.body).toMatch(/rabbitmq blocked publishers/);
      },
      { timeout: 15_000 },
    );
    const rssBlocked = rssKiB(gw.proc.pid!);
    const publishedAtBlock = await metric(gw.httpPort, "telemetry_gateway_readings_published_total");
    await new Promise((r) => setTimeout(r, 3_000));
    // Nothing confirmed while blocked, and no more than the window taken in.
    expect(await metric(gw.httpPort, "telemetry_gateway_readings_published_total")).toBe(publishedAtBlock);
    expect(await metric(gw.httpPort, "telemetry_gateway_inflight_messages")).toBeLessThanOrEqual(INFLIGHT);
    const rssAfterWait = rssKiB(gw.proc.pid!);

    await watermark("0.4");
    await vi.waitFor(async () => expect((await httpGet(gw.httpPort, "/readyz")).status).toBe(200), {
      timeout: 15_000,
    });
    const counts = await expectStoredExactlyOnce(names, stream);
    const duplicates = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
    report("blocked", {
      ...counts,
      duplicates,
      rssBlockedKiB: rssBlocked,
      rssAfter3sBlockedKiB: rssAfterWait,
    });
    // Memory does not grow with the readings the sensors keep sending while blocked (they wait in the broker).
    expect(rssAfterWait - rssBlocked).toBeLessThan(20 * 1024);
  }, 120_000);
});
