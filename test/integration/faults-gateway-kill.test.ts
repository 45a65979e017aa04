import { describe, expect, it } from "vitest";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";

const READINGS = 6_000;
const RATE = 1_000;
/** Readings the broker takes for the gateway's session while the gateway is dead (1.5 s of the stream). */
const READINGS_WHILE_DOWN = 1_500;

describe("fault: kill -9 of the gateway mid-stream", () => {
  // max_queued_messages 0: the broker keeps every QoS 1 message for the gateway's session while it is away.
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0 } });

  it("readings published while the gateway is dead are kept by its MQTT session and stored once after a restart with the same GATEWAY_ID", async () => {
    await using run = await brokers().pipeline("fault-gw-kill");
    const { names } = run;
    const { gateway: first, processor } = await run.start();
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 202 });

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

    await until("the broker has taken readings for the dead gateway's session", 20_000, async () => {
      return stream.acked() - ackedAtKill >= READINGS_WHILE_DOWN;
    });
    const ackedWhileDown = stream.acked() - ackedAtKill;
    expect(ackedWhileDown, "the simulator went on publishing while the gateway was dead").toBeGreaterThan(0);
    // "started" comes before the MQTT session is up.
    const second = await run.gateway();
    await until("the restarted gateway is subscribed", 20_000, async () =>
      second.logs.some((l) => l.msg === "MQTT connected and subscribed"),
    );
    const session = second.logs.find((l) => l.msg === "MQTT connected and subscribed");
    expect(session?.sessionPresent, "the restarted gateway resumed its persistent session").toBe(true);

    const counts = await expectStoredExactlyOnce(names, stream);
    // What the dead gateway had published but not PUBACKed comes again through its session and is published
    // twice: the processor (which ran throughout) counts each second copy as a duplicate.
    const { duplicates } = await expectDeliveriesAccounted(processor, counts.stored);
    report("gateway kill -9 mid-stream", {
      ...counts,
      duplicates,
      publishedAtKill,
      inflightAtKill,
      ackedWhileGatewayDown: ackedWhileDown,
    });
  });
});
