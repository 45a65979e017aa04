import { describe, expect, it } from "vitest";
import { expectStoredExactlyOnce, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { type PrivatePipeline, privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { countRows, untilReady } from "../helpers/services.js";

const READINGS = 6_000;
const RATE = 1_000;
const SHARE_GROUP = "gateways";
const PUBLISHED = "telemetry_gateway_readings_published_total";
const RECEIVED = "telemetry_gateway_messages_received_total";
/** Rows unchanged for this long once the stream is done: the surviving gateway has nothing more to give. */
const SETTLED_MS = 3_000;

describe("gateways sharing the MQTT subscription (GATEWAY_SHARE_GROUP) on Mosquitto 2.0", () => {
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0 } });

  /** A gateway of the share group with its own GATEWAY_ID (its own MQTT session). */
  const startGateway = (run: PrivatePipeline, id: string, extra: Record<string, string> = {}) =>
    run.gateway({ GATEWAY_ID: id, GATEWAY_SHARE_GROUP: SHARE_GROUP, ...extra });

  /** A processor and two gateways of one share group, ids `<gatewayId>-a` and `-b`, all ready. */
  const startMembers = async (run: PrivatePipeline) => {
    const idA = `${run.names.gatewayId}-a`;
    const idB = `${run.names.gatewayId}-b`;
    const processor = await run.processor();
    const [a, b] = await Promise.all([startGateway(run, idA), startGateway(run, idB)]);
    await untilReady(processor, a, b);
    return { idA, idB, processor, a, b };
  };

  it("every reading is stored exactly once and both gateways work when one is killed with SIGKILL mid-stream and restarted", async () => {
    await using run = await brokers().pipeline("scale-share");
    const n = run.names;
    const { idA, idB, a, b } = await startMembers(run);

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
    const restarted = await startGateway(run, idA);
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
    await using run = await brokers().pipeline("scale-share-dead");
    const n = run.names;
    const { idA, idB, a, b } = await startMembers(run);

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

    const returned = await startGateway(run, idA);
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
