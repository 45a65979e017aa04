import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../helpers/private-brokers.js";
import { cleanup, type Service, startService, type TestNames } from "../helpers/services.js";

const READINGS = 6_000;
const RATE = 1_000;
const DOWN_MS = 1_500;

describe("fault: kill -9 of the gateway mid-stream", () => {
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  let gateway: Service | undefined;
  let processor: Service | undefined;

  beforeAll(async () => {
    // max_queued_messages 0: the broker keeps every QoS 1 message for the gateway's session while it is away.
    mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
    names = faultNames("fault-gw-kill", { mqttUrl: mosquitto.url });
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names);
    await mosquitto.stop();
  });

  it("readings published while the gateway is dead are kept by its MQTT session and stored once after a restart with the same GATEWAY_ID", async () => {
    [gateway, processor] = await Promise.all([
      startService("gateway", names.env),
      startService("processor", names.env),
    ]);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 202 });

    const first = gateway;
    let publishedAtKill = 0;
    let inflightAtKill = 0;
    await until("the gateway has published the first readings", 20_000, async () => {
      inflightAtKill = await metric(first.httpPort, "telemetry_gateway_inflight_messages");
      publishedAtKill = await metric(first.httpPort, "telemetry_gateway_readings_published_total");
      return publishedAtKill >= READINGS / 12;
    });
    expect(await first.stop("SIGKILL")).toBeNull();
    expect(first.proc.signalCode).toBe("SIGKILL");
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "the kill must land mid-stream").toBeLessThan(READINGS);

    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
    const ackedWhileDown = stream.acked() - ackedAtKill;
    expect(ackedWhileDown, "the simulator went on publishing while the gateway was dead").toBeGreaterThan(0);
    gateway = await startService("gateway", names.env);
    const session = gateway.logs.find((l) => l.msg === "MQTT connected and subscribed");
    expect(session?.sessionPresent, "the restarted gateway resumed its persistent session").toBe(true);

    const counts = await expectStoredExactlyOnce(names, stream);
    const duplicates = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
    report("gateway kill -9 mid-stream", {
      ...counts,
      duplicates,
      publishedAtKill,
      inflightAtKill,
      ackedWhileGatewayDown: ackedWhileDown,
    });
  });
});
