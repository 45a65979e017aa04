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
import {
  cleanup,
  httpGet,
  type Service,
  startService,
  type TestNames,
  untilReady,
} from "../helpers/services.js";

/** Length of the outage; `OUTAGE_MS=180000` gives the minutes-long run quoted in README. */
const OUTAGE_MS = Number(process.env.OUTAGE_MS ?? 15_000);
const RATE = 1_000;
const INFLIGHT = 1_000;

describe("fault: RabbitMQ is down while sensors keep publishing", () => {
  let rabbit: PrivateRabbit;
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  let gateway: Service | undefined;
  let processor: Service | undefined;

  beforeAll(async () => {
    [rabbit, mosquitto] = await Promise.all([startPrivateRabbit(), startPrivateMosquitto()]);
    names = faultNames("outage", { amqpUrl: rabbit.url, mqttUrl: mosquitto.url });
  }, 90_000);

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names).catch(() => undefined);
    await Promise.all([rabbit?.stop(), mosquitto?.stop()]);
  });

  it(
    "the gateway's memory stays flat through the outage and every reading arrives afterwards",
    async () => {
      const env = { ...names.env, GATEWAY_INFLIGHT: String(INFLIGHT) };
      [processor, gateway] = await Promise.all([
        startService("processor", env),
        startService("gateway", env),
      ]);
      await untilReady(processor, gateway);
      const gw = gateway;
      const count = Math.round(((OUTAGE_MS + 10_000) * RATE) / 1_000);
      const stream = startStream(names, { count, rate: RATE, seed: 11 });
      await vi.waitFor(
        async () =>
          expect(await metric(gw.httpPort, "telemetry_gateway_readings_published_total")).toBeGreaterThan(
            2_000,
          ),
        { timeout: 15_000 },
      );

      await rabbit.stopApp();
      const samples: number[] = [];
      const started = Date.now();
      while (Date.now() - started < OUTAGE_MS) {
        samples.push(rssKiB(gw.proc.pid!));
        await new Promise((r) => setTimeout(r, 1_000));
      }
      expect((await httpGet(gw.httpPort, "/readyz")).status).toBe(503);
      expect(await metric(gw.httpPort, "telemetry_gateway_inflight_messages")).toBeLessThanOrEqual(INFLIGHT);
      await rabbit.startApp();

      const counts = await expectStoredExactlyOnce(names, stream, 60_000);
      const duplicates = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
      // Compare the second half of the outage with its first few seconds: flat, not growing with time.
      const early = Math.max(...samples.slice(2, 5));
      const late = Math.max(...samples.slice(Math.floor(samples.length / 2)));
      report("rabbitmq down while publishing", {
        ...counts,
        duplicates,
        outageMs: OUTAGE_MS,
        rssKiB: { min: Math.min(...samples), early, late, max: Math.max(...samples) },
      });
      expect(late - early).toBeLessThan(16 * 1024);
    },
    OUTAGE_MS + 150_000,
  );
});
