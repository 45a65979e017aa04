/**
 * The gateway's store-and-forward spool against real brokers and real crashes: the uplink (RabbitMQ) is a port that
 * refuses connections, the gateway is killed with SIGKILL while it spools, and every reading the MQTT broker
 * acknowledged to the simulator must be stored exactly once when the uplink comes back.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  expectStoredExactlyOnce,
  metric,
  report,
  type Stream,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { freePort } from "../helpers/private-brokers.js";
import { type PrivatePipeline, privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet, type Service, untilReady } from "../helpers/services.js";

const OUTAGE_READINGS = 6_000;
const OUTAGE_RATE = 1_000;
const OUTAGE_KILLS = 3;
/** The kill loop's readings come in streams of this many, one after another until the last kill. */
const LOOP_CHUNK = 10_000;
const LOOP_RATE = 1_000;
const LOOP_KILLS = 20;
const STORED_TIMEOUT_MS = 90_000;

describe("spool: uplink outage with the gateway killed", () => {
  // max_queued_messages 0: while the gateway is dead between kills the broker keeps its session's readings.
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0 } });
  let deadUplink: string;

  beforeAll(async () => {
    // A port nothing listens on: every connection to the uplink is refused.
    deadUplink = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
  });

  const gatewayEnv = (run: PrivatePipeline, amqpUrl: string) => ({
    AMQP_URL: amqpUrl,
    SPOOL_PATH: join(run.names.dir, "spool"),
    // One kill must not cost a 10 s settle: SIGKILL leaves nothing to settle anyway.
    DRAIN_TIMEOUT: "1s",
  });

  const start = (run: PrivatePipeline, amqpUrl: string): Promise<Service> =>
    run.gateway(gatewayEnv(run, amqpUrl));

  it("readings spooled while RabbitMQ is unreachable, across three kill -9 of the gateway, are stored exactly once when it is back", async () => {
    await using run = await brokers().pipeline("spool-outage");
    const { names } = run;
    let gateway = await start(run, deadUplink);
    // The gateway is doing its job while the uplink is down: ready, with the outage in its own metric.
    await untilReady(gateway);
    expect(await metric(gateway.httpPort, "telemetry_gateway_uplink_up")).toBe(0);
    const stream = startStream(names, { count: OUTAGE_READINGS, rate: OUTAGE_RATE, seed: 1_601 });

    const depths: number[] = [];
    for (let kill = 1; kill <= OUTAGE_KILLS; kill++) {
      const g = gateway;
      await until(`the spool holds ${kill * 1_000} readings`, 30_000, async () => {
        return (await metric(g.httpPort, "telemetry_gateway_spool_depth_readings")) >= kill * 1_000;
      });
      depths.push(await metric(g.httpPort, "telemetry_gateway_spool_depth_readings"));
      expect(await g.stop("SIGKILL")).toBeNull();
      gateway = await start(run, deadUplink);
      await untilReady(gateway);
    }
    await stream.done;
    const g = gateway;
    // Every reading the broker acknowledged reached the gateway and was PUBACKed once durable in the spool.
    await until("the spool holds the whole stream", 30_000, async () => {
      return (await metric(g.httpPort, "telemetry_gateway_spool_depth_readings")) >= OUTAGE_READINGS;
    });
    const spooled = await metric(g.httpPort, "telemetry_gateway_spool_depth_readings");
    expect((await httpGet(g.httpPort, "/readyz")).status).toBe(200);
    await g.stop("SIGKILL");

    // A SIGTERM while the uplink is down does not wait out DRAIN_TIMEOUT for confirms that cannot come: what is in
    // flight is durable in the spool. (It used to take the whole timeout, 10 s by default.)
    const patient = await run.gateway({ ...gatewayEnv(run, deadUplink), DRAIN_TIMEOUT: "60s" });
    await untilReady(patient);
    await until("the restarted gateway hands the backlog to its sink", 30_000, async () => {
      return (await metric(patient.httpPort, "telemetry_gateway_publish_backlog")) > 0;
    });
    const termAt = Date.now();
    expect(await patient.stop("SIGTERM")).toBe(0);
    const stopMs = Date.now() - termAt;
    expect(stopMs).toBeLessThan(30_000);

    // The uplink is back: the next gateway drains the spool into RabbitMQ and the processor stores it.
    gateway = await start(run, names.amqpUrl);
    await run.processor();
    const counts = await expectStoredExactlyOnce(names, stream, STORED_TIMEOUT_MS);
    const drained = gateway;
    await until("the spool is empty", 30_000, async () => {
      return (await metric(drained.httpPort, "telemetry_gateway_spool_depth_readings")) === 0;
    });
    expect(await metric(drained.httpPort, "telemetry_gateway_uplink_up")).toBe(1);
    expect(await metric(drained.httpPort, "telemetry_gateway_spool_dropped_total")).toBe(0);
    report("spool: outage with 3 kills", {
      ...counts,
      depthsAtKills: depths,
      spooledBeforeUplink: spooled,
      sigtermWithUplinkDownMs: stopMs,
    });
  });

  it("twenty kill -9 while the gateway spools and drains (uplink down and up in turns) lose nothing PUBACKed", async () => {
    await using run = await brokers().pipeline("spool-kill-loop");
    const { names } = run;
    await run.processor();
    let gateway = await start(run, names.amqpUrl);
    await untilReady(gateway);
    // Streams one after another until the last kill: twenty restarts take 30-60 s on a loaded 2-core machine, and
    // every kill must land while readings arrive.
    const streams: Stream[] = [];
    let killing = true;
    const chain = (async () => {
      while (killing) {
        const label = `loop${streams.length}`;
        const stream = startStream(names, { count: LOOP_CHUNK, rate: LOOP_RATE, seed: 1_602, label });
        streams.push(stream);
        await stream.done;
      }
    })();
    const acked = () => streams.reduce((n, s) => n + s.acked(), 0);
    const ackedAtKills: number[] = [];
    let kills = 0;
    while (kills < LOOP_KILLS) {
      const g = gateway;
      const received = await metric(g.httpPort, "telemetry_gateway_messages_received_total");
      // Kill once this gateway has taken some readings (mid-stream, mid-append, mid-drain), never on a timer.
      await until(
        `gateway ${kills + 1} has taken readings (${acked()} acknowledged to the simulator)`,
        30_000,
        async () => {
          return (await metric(g.httpPort, "telemetry_gateway_messages_received_total")) >= received + 300;
        },
      );
      expect(await g.stop("SIGKILL")).toBeNull();
      kills++;
      ackedAtKills.push(acked());
      // Odd restarts find the uplink down (they spool), even ones find it up (they drain what is spooled).
      gateway = await start(run, kills % 2 === 1 ? deadUplink : names.amqpUrl);
    }
    killing = false;
    await chain;
    const last = gateway;
    await last.stop("SIGKILL");
    gateway = await start(run, names.amqpUrl);
    const counts = await expectStoredExactlyOnce(names, streams, STORED_TIMEOUT_MS);
    const segments = readdirSync(join(names.dir, "spool")).filter((f) => f.endsWith(".seg")).length;
    report("spool: kill loop", {
      ...counts,
      kills,
      streams: streams.length,
      ackedAtKills,
      segmentsLeft: segments,
    });
    expect(kills).toBe(LOOP_KILLS);
    // Readings were being published between every two kills: each kill landed mid-stream.
    for (let i = 1; i < ackedAtKills.length; i++)
      expect(ackedAtKills[i]).toBeGreaterThan(ackedAtKills[i - 1]!);
    expect(counts.stored).toBe(streams.length * LOOP_CHUNK);
  });
});
