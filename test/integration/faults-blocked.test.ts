import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it, vi } from "vitest";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  metric,
  report,
  rssKiB,
  startStream,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet } from "../helpers/services.js";

const execFileAsync = promisify(execFile);
const INFLIGHT = 200;
/** The stream running when the alarm is raised: long enough that the gateway is still publishing then. */
const READINGS = 12_000;
const RATE = 1_000;
/**
 * A second stream, sent whole while RabbitMQ blocks the gateway. A gateway that kept what it was sent beyond its
 * window would hold all of it: at a few hundred bytes a reading at the very least, more than the memory bound
 * below, so the check can see such a leak (3 s at 1,000/s, as before, could not). About 10 s at 4,000/s.
 */
const BLOCKED_READINGS = 40_000;
const BLOCKED_RATE = 4_000;
/** Growth of the gateway's resident memory allowed while blocked: heap and allocator noise stay well under it. */
const RSS_GROWTH_BOUND_KIB = 20 * 1024;

describe("fault: RabbitMQ blocks publishers (memory alarm)", () => {
  const brokers = privateBrokersPerFile({ rabbit: true });

  it("the gateway holds PUBACKs while blocked, keeps memory bounded, and resumes with nothing lost", async () => {
    await using run = await brokers().pipeline("blocked");
    const { names } = run;
    const { rabbit } = brokers();
    const { gateway: gw, processor } = await run.start({ GATEWAY_INFLIGHT: String(INFLIGHT) });
    // Long enough that the gateway is still publishing when the alarm is raised (rabbitmqctl is slow under load).
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 5 });
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
    const ackedAtBlock = stream.acked();
    const blockedAt = Date.now();
    const whileBlocked = startStream(names, {
      count: BLOCKED_READINGS,
      rate: BLOCKED_RATE,
      seed: 6,
      label: "blocked",
    });
    const sentBlocked = await whileBlocked.done;
    expect(sentBlocked.acked, "the broker took the whole second stream").toBe(BLOCKED_READINGS);
    const blockedMs = Date.now() - blockedAt;
    const sentWhileBlocked = stream.acked() - ackedAtBlock + sentBlocked.acked;
    // Nothing confirmed while blocked, and no more than the window taken in.
    expect(await metric(gw.httpPort, "telemetry_gateway_readings_published_total")).toBe(publishedAtBlock);
    expect(await metric(gw.httpPort, "telemetry_gateway_inflight_messages")).toBeLessThanOrEqual(INFLIGHT);
    const rssAfterWait = rssKiB(gw.proc.pid!);

    await watermark("0.4");
    await vi.waitFor(async () => expect((await httpGet(gw.httpPort, "/readyz")).status).toBe(200), {
      timeout: 15_000,
    });
    const counts = await expectStoredExactlyOnce(names, [stream, whileBlocked], 90_000);
    // The processor's connection is not blocked (an alarm blocks publishers only): exact accounting.
    const { duplicates } = await expectDeliveriesAccounted(processor, counts.stored);
    report("blocked", {
      ...counts,
      duplicates,
      sentWhileBlocked,
      blockedMs,
      rssBlockedKiB: rssBlocked,
      rssAfterBlockedKiB: rssAfterWait,
    });
    // Memory does not grow with the readings the sensors keep sending while blocked (they wait in the broker).
    expect(rssAfterWait - rssBlocked).toBeLessThan(RSS_GROWTH_BOUND_KIB);
  }, 240_000);
});
