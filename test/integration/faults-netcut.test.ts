import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrivateRabbit } from "../../scripts/private-brokers.js";
import { expectStoredExactlyOnce, faultNames, report, startStream, until } from "../helpers/fault-stream.js";
import { type Netns, requireNetns, startNetns } from "../helpers/netns.js";
import { type PrivateBrokers, pipelineOn, startPrivateBrokers } from "../helpers/private-pipeline.js";
import { httpAt, metricAt, type ReadinessWatch, watchReadiness } from "../helpers/readiness.js";
import { countRows, type Service } from "../helpers/services.js";

/** How long each link stays cut, as issue 18 asks: long enough that only heartbeats and keepalives can tell. */
const CUT_MS = 30_000;
const READINGS = 8_000;
const RATE = 200;
/**
 * The gateway's MQTT keepalive (MQTT_KEEPALIVE) and both services' AMQP heartbeat (`?heartbeat=` in AMQP_URL) in
 * this file. With the defaults (30 s keepalive, 10 s heartbeat) a 30 s cut ends before it can be noticed, or only
 * just: measured, the AMQP side noticed after 29.2 s (gateway) and 29.9 s (processor).
 */
const KEEPALIVE_S = 10;
const HEARTBEAT_S = 5;
/** After the cut heals: time for the reconnects (TCP retransmission backoff included) and the backlog. */
const CATCH_UP_MS = 90_000;
const TEST_TIMEOUT_MS = 240_000;
/** RabbitMQ's guest user may only connect from loopback; the namespaces connect over the veth. */
const AMQP_USER = "netcut";
const AMQP_PASSWORD = "netcut-secret";
const LOCALHOST = "127.0.0.1";

type Link = "gateway-rabbitmq" | "gateway-mqtt" | "processor-rabbitmq";

/**
 * The longest the services may take to report a cut: the MQTT input sends PINGREQ after a keepalive and gives up
 * when the next one passes without PINGRESP (2 keepalives); amqplib checks every heartbeat and gives up after two
 * silent checks in a row (3 heartbeats). Plus 2 s for the readiness poll and timers late under load.
 */
const DETECTION_BOUND_MS: Record<Link, number> = {
  "gateway-rabbitmq": 3 * HEARTBEAT_S * 1_000 + 2_000,
  "gateway-mqtt": 2 * KEEPALIVE_S * 1_000 + 2_000,
  "processor-rabbitmq": 3 * HEARTBEAT_S * 1_000 + 2_000,
};

describe("fault: a network cut (packets dropped, no RST) between a service in its own namespace and a broker", () => {
  let brokers: PrivateBrokers<PrivateRabbit> | undefined;
  /** The gateway's namespace; the brokers listen on its host end, which every namespace here can route to. */
  let gatewayNs: Netns | undefined;
  let processorNs: Netns | undefined;
  let amqpUrl = "";
  const watches: ReadinessWatch[] = [];

  beforeAll(async () => {
    await requireNetns();
    gatewayNs = await startNetns("gw");
    processorNs = await startNetns("proc");
    const host = gatewayNs.hostAddress;
    brokers = await startPrivateBrokers({
      rabbit: { host },
      mosquitto: { host, maxQueued: 0, persistence: true },
    });
    const { rabbit } = brokers;
    await rabbit.ctl("add_user", AMQP_USER, AMQP_PASSWORD);
    await rabbit.ctl("set_permissions", "-p", "/", AMQP_USER, ".*", ".*", ".*");
    amqpUrl = `amqp://${AMQP_USER}:${AMQP_PASSWORD}@${host}:${rabbit.port}?heartbeat=${HEARTBEAT_S}`;
  }, 120_000);

  afterAll(async () => {
    await Promise.all(watches.map((w) => w.stop()));
    // Each teardown runs even when another one fails.
    const results = await Promise.allSettled([
      gatewayNs?.stop(),
      processorNs?.stop(),
      brokers?.[Symbol.asyncDispose](),
    ]);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0)
      throw new AggregateError(
        failed.map((r) => r.reason),
        "teardown failed",
      );
  }, 120_000);

  /**
   * Runs gateway and processor (one of them inside its namespace), streams READINGS at RATE, cuts `link` for CUT_MS
   * once a quarter is stored, heals it, and checks what a user observes: `/readyz` of the cut service said so while
   * cut and is ready again afterwards, and every reading the sensors got a PUBACK for is stored exactly once.
   */
  async function cutAndHeal(link: Link, seed: number) {
    if (!gatewayNs || !processorNs || !brokers) throw new Error("beforeAll did not finish");
    const { rabbit, mosquitto } = brokers;
    await using run = pipelineOn(faultNames(`netcut-${link}`, { mqttUrl: mosquitto.url, amqpUrl }));
    const { names } = run;
    const env = { MQTT_KEEPALIVE: String(KEEPALIVE_S) };
    const inNs = { ...env, HTTP_HOST: "0.0.0.0" };
    const processorCut = link === "processor-rabbitmq";
    const ns = processorCut ? processorNs : gatewayNs;

    const [gateway, processor] = await Promise.all([
      processorCut ? run.gateway(env) : run.gateway(inNs, gatewayNs.exec),
      processorCut ? run.processor(inNs, processorNs.exec) : run.processor(env),
    ]);
    const cutService = processorCut ? processor : gateway;
    const cutHost = ns.address;
    const gatewayHost = processorCut ? LOCALHOST : gatewayNs.address;
    const processorHost = processorCut ? processorNs.address : LOCALHOST;
    // Both, not only the cut one: a reading published before the gateway has subscribed has no subscriber, and the
    // MQTT broker acknowledges it and drops it (seen under CI load: the stream's first 4-12 readings missing).
    await until("the gateway and the processor are ready", 30_000, async () => {
      const [g, p] = await Promise.all([
        httpAt(gatewayHost, gateway.httpPort, "/readyz"),
        httpAt(processorHost, processor.httpPort, "/readyz"),
      ]);
      return g.status === 200 && p.status === 200;
    });

    const stream = startStream(names, { count: READINGS, rate: RATE, seed });
    await until(
      "a quarter of the stream is stored",
      60_000,
      async () => countRows(names.dbPath) >= READINGS / 4,
    );

    const watch = watchReadiness(cutHost, cutService.httpPort);
    watches.push(watch);
    await until("the readiness watch has its first answer", 5_000, async () => watch.changes.length > 0);
    expect(watch.changes[0]?.status, `${link}: ready before the cut`).toBe(200);

    const port = link === "gateway-mqtt" ? mosquitto.port : rabbit.port;
    const ackedAtCut = stream.acked();
    const cutAt = Date.now();
    /** A service's log lines from just before the cut on, for a failure's report. */
    const sinceCut = (s: Service) => s.logs.filter((l) => Date.parse(String(l.time)) >= cutAt - 1_000);
    await ns.cut(port);
    // The fault lasts CUT_MS; what happens meanwhile is recorded by the watch, not decided by this wait.
    await sleep(CUT_MS);
    await ns.heal();
    const healedAt = Date.now();
    const storedAtHeal = countRows(names.dbPath);
    expect(ackedAtCut, `${link}: the cut must come mid-stream`).toBeLessThan(READINGS);

    const noticed = watch.firstNotReady(cutAt);
    const recovered = await until(`${link}: the cut service is ready again`, CATCH_UP_MS, async () => {
      return watch.firstReady(noticed?.at ?? healedAt) !== undefined && watch.changes.at(-1)?.status === 200;
    }).then(
      () => true,
      () => false,
    );
    if (!recovered)
      report(`network cut ${link}: not ready again ${CATCH_UP_MS} ms after the cut healed`, {
        readiness: watch.changes.map((c) => `${c.at - cutAt} ms after the cut: ${c.status} ${c.body}`),
        logs: sinceCut(cutService).slice(-30),
      });
    expect(recovered, `${link}: the cut service is ready again after the cut healed`).toBe(true);
    const counts = await expectStoredExactlyOnce(names, stream, CATCH_UP_MS).catch((err: unknown) => {
      report(`network cut ${link}: not every reading stored`, {
        cutAt: new Date(cutAt).toISOString(),
        healedAt: new Date(healedAt).toISOString(),
        processor: sinceCut(processor).slice(-40),
        gateway: sinceCut(gateway).slice(-40),
      });
      throw err;
    });
    const caughtUpAt = Date.now();
    await watch.stop();

    const duplicates = await metricAt(
      processorHost,
      processor.httpPort,
      "telemetry_processor_duplicates_total",
    );
    const backlog = await metricAt(gatewayHost, gateway.httpPort, "telemetry_gateway_publish_backlog");
    const readyAgain = watch.firstReady(noticed?.at ?? healedAt);
    const figures = {
      ...counts,
      duplicates,
      ackedAtCut,
      storedAtHeal,
      detectionMs: noticed ? noticed.at - cutAt : null,
      reason: noticed?.body ?? null,
      readyAgainAfterHealMs: readyAgain ? readyAgain.at - healedAt : null,
      allStoredAfterHealMs: caughtUpAt - healedAt,
      readiness: watch.changes.map((c) => `${c.at - cutAt} ms after the cut: ${c.status} ${c.body}`),
    };
    report(`network cut ${link} for ${CUT_MS / 1_000} s`, figures);

    expect(noticed, `${link}: /readyz of the cut service reported nothing during the cut`).toBeDefined();
    expect(
      noticed?.at ?? Number.POSITIVE_INFINITY,
      `${link}: /readyz noticed only after the cut healed`,
    ).toBeLessThan(healedAt);
    expect(figures.detectionMs, `${link}: /readyz noticed the cut late`).toBeLessThanOrEqual(
      DETECTION_BOUND_MS[link],
    );
    expect(backlog, `${link}: the gateway holds nothing back once caught up`).toBe(0);
    expect(gateway.proc.exitCode, "the gateway kept running").toBeNull();
    expect(processor.proc.exitCode, "the processor kept running").toBeNull();
    await Promise.all([gateway.stop(), processor.stop()]);
    return figures;
  }

  it(
    "a 30 s cut between the gateway and RabbitMQ is reported by the gateway's /readyz and loses nothing",
    async () => {
      await cutAndHeal("gateway-rabbitmq", 1_801);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a 30 s cut between the gateway and the MQTT broker is reported by the gateway's /readyz and loses nothing",
    async () => {
      await cutAndHeal("gateway-mqtt", 1_802);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a 30 s cut between the processor and RabbitMQ is reported by the processor's /readyz and loses nothing",
    async () => {
      await cutAndHeal("processor-rabbitmq", 1_803);
    },
    TEST_TIMEOUT_MS,
  );
});
