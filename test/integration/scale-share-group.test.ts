import { rmSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type PrivateMosquitto, startPrivateMosquitto } from "../../scripts/private-brokers.js";
import {
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import {
  cleanup,
  countRows,
  type Service,
  startService,
  type TestNames,
  untilReady,
} from "../helpers/services.js";

const READINGS = 6_000;
const RATE = 1_000;
const SHARE_GROUP = "gateways";
const PUBLISHED = "telemetry_gateway_readings_published_total";
const RECEIVED = "telemetry_gateway_messages_received_total";
/** Rows unchanged for this long once the stream is done: the surviving gateway has nothing more to give. */
const SETTLED_MS = 3_000;

describe("gateways sharing the MQTT subscription (GATEWAY_SHARE_GROUP) on Mosquitto 2.0", () => {
  let mosquitto: PrivateMosquitto;
  let names: TestNames | undefined;
  const services: Service[] = [];

  beforeAll(async () => {
    mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
  }, 30_000);

  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop("SIGKILL")));
    const done = names;
    names = undefined;
    if (done) await cleanup(done).catch(() => rmSync(done.dir, { recursive: true, force: true }));
  });

  afterAll(async () => {
    await mosquitto?.stop();
  });

  /** A gateway of the share group with its own GATEWAY_ID (its own MQTT session). */
  const startGateway = async (n: TestNames, id: string, extra: Record<string, string> = {}) => {
    const gateway = await startService("gateway", {
      ...n.env,
      GATEWAY_ID: id,
      GATEWAY_SHARE_GROUP: SHARE_GROUP,
      ...extra,
    });
    services.push(gateway);
    return gateway;
  };

  it("every reading is stored exactly once and both gateways work when one is killed with SIGKILL mid-stream and restarted", async () => {
    const n = faultNames("scale-share", { mqttUrl: mosquitto.url });
    names = n;
    const idA = `${n.gatewayId}-a`;
    const idB = `${n.gatewayId}-b`;
    const processor = await startService("processor", n.env);
    services.push(processor);
    const [a, b] = await Promise.all([startGateway(n, idA), startGateway(n, idB)]);
    await untilReady(processor, a, b);

    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 1_701 });
    let publishedByA = 0;
    let publishedByB = 0;
    await until(
      "both gateways have published and a quarter of the stream is acknowledged",
      30_000,
      async () => {
        publishedByA = await metric(a.httpPort, PUBLISHED);
        publishedByB = await metric(b.httpPort, PUBLISHED);
        return publishedByA > 0 && publishedByB > 0 && stream.acked() >= READINGS / 4;
      },
    );
    expect(await a.stop("SIGKILL")).toBeNull();
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "the gateway must die mid-stream").toBeLessThan(READINGS);
    const restarted = await startGateway(n, idA);
    await untilReady(restarted);

    const counts = await expectStoredExactlyOnce(n, stream, 60_000, [idA, idB]);
    const publishedByRestarted = await metric(restarted.httpPort, PUBLISHED);
    const publishedByBAtEnd = await metric(b.httpPort, PUBLISHED);
    expect(publishedByBAtEnd, "the gateway that stayed up did work").toBeGreaterThan(0);
    expect(publishedByA + publishedByRestarted, "the killed gateway did work").toBeGreaterThan(0);
    report("two gateways sharing the subscription, one killed -9 and restarted", {
      ...counts,
      ackedAtKill,
      publishedByKilledBeforeKill: publishedByA,
      publishedByRestarted,
      publishedByOther: publishedByBAtEnd,
    });
  }, 180_000);

  it("readings in flight to a member that dies and does not come back wait in its session until a gateway with its GATEWAY_ID returns", async () => {
    const n = faultNames("scale-share-dead", { mqttUrl: mosquitto.url });
    names = n;
    const idA = `${n.gatewayId}-a`;
    const idB = `${n.gatewayId}-b`;
    const processor = await startService("processor", n.env);
    services.push(processor);
    const [a, b] = await Promise.all([startGateway(n, idA), startGateway(n, idB)]);
    await untilReady(processor, a, b);

    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 1_702 });
    await until("a third of the stream is acknowledged and both gateways publish", 30_000, async () => {
      return (
        stream.acked() >= READINGS / 3 &&
        (await metric(a.httpPort, PUBLISHED)) > 0 &&
        (await metric(b.httpPort, PUBLISHED)) > 0
      );
    });
    const receivedByA = await metric(a.httpPort, RECEIVED);
    const publishedByA = await metric(a.httpPort, PUBLISHED);
    expect(await a.stop("SIGKILL")).toBeNull();
    const killedAt = Date.now();
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "the gateway must die mid-stream").toBeLessThan(READINGS);
    const done = await stream.done;

    // The survivor takes what it is given; wait until the rows stop growing.
    let rows = countRows(n.dbPath);
    let changedAt = Date.now();
    await until("the rows stop growing", 60_000, async () => {
      const now = countRows(n.dbPath);
      if (now !== rows) {
        rows = now;
        changedAt = Date.now();
      }
      return Date.now() - changedAt >= SETTLED_MS;
    });
    const missingWhileDead = done.validAcked - rows;
    const receivedByB = await metric(b.httpPort, RECEIVED);
    // Mosquitto keeps the dead member's unacknowledged readings (and what it queues for the offline session) in
    // that session: the surviving member never gets them.
    expect(missingWhileDead, "readings held for the dead member's session").toBeGreaterThan(0);

    const returned = await startGateway(n, idA);
    const returnedAt = Date.now();
    const counts = await expectStoredExactlyOnce(n, stream, 60_000, [idA, idB]);
    report("a share-group gateway killed -9 and not restarted, then one with its GATEWAY_ID started", {
      ...counts,
      ackedAtKill,
      receivedByDeadBeforeKill: receivedByA,
      publishedByDeadBeforeKill: publishedByA,
      unackedByDeadAtKill: receivedByA - publishedByA,
      receivedBySurvivor: receivedByB,
      missingWhileDead,
      deadForMs: returnedAt - killedAt,
      deliveredToReturned: await metric(returned.httpPort, RECEIVED),
    });
  }, 180_000);
});
