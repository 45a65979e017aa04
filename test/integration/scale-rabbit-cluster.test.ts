import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  killRabbit,
  type PrivateRabbit,
  type PrivateRabbitCluster,
  rabbitVm,
  startPrivateRabbitCluster,
} from "../../scripts/private-brokers.js";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import {
  cleanup,
  httpGet,
  type Service,
  startService,
  type TestNames,
  untilReady,
} from "../helpers/services.js";

const CLUSTER_SIZE = 3;
const READINGS = 8_000;
const RATE = 1_000;
const PUBLISHED = "telemetry_gateway_readings_published_total";
const STORED = "telemetry_processor_readings_stored_total";

/** The node a service's AMQP session last connected to, from its "amqp connected" log line (`host:port`). */
function connectedNode(service: Service): string | undefined {
  return service.logs.filter((l) => l.msg === "amqp connected").at(-1)?.broker as string | undefined;
}

/** How often the counters are read while the node dies: the stall figures are exact to about this. */
const SAMPLE_MS = 50;

/** Reads a counter of a service every SAMPLE_MS until stopped, keeping the times it was seen to grow. */
function sampleGrowth(service: Service, counter: string) {
  const grewAt: number[] = [];
  let last = -1;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const value = await metric(service.httpPort, counter).catch(() => last);
      if (last >= 0 && value > last) grewAt.push(Date.now());
      last = value;
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    }
  })();
  return {
    /** True when the counter was seen to grow after `at`. */
    grewSince: (at: number) => grewAt.some((t) => t > at),
    /**
     * Stops sampling; the longest time without growth from the last growth before `killedAt` to the first after
     * `goneAt` (a service may go on for a while with deliveries it had before the node died).
     */
    async longestStall(killedAt: number, goneAt: number): Promise<number> {
      stopped = true;
      await loop;
      const from = grewAt.filter((t) => t <= killedAt).at(-1) ?? killedAt;
      const to = grewAt.find((t) => t > goneAt);
      if (to === undefined) throw new Error(`${counter} never grew after the kill`);
      const times = [from, ...grewAt.filter((t) => t > from && t <= to)];
      return Math.max(...times.slice(1).map((t, i) => t - (times[i] as number)));
    },
  };
}

describe("fault: the RabbitMQ node leading the quorum queue is killed (SIGKILL) in a cluster of three", () => {
  let cluster: PrivateRabbitCluster;
  let names: TestNames | undefined;
  let survivor: PrivateRabbit | undefined;
  const services: Service[] = [];

  beforeAll(async () => {
    cluster = await startPrivateRabbitCluster(CLUSTER_SIZE);
    console.log(
      `[private rabbitmq cluster] ${cluster.nodes.map((n) => n.node).join(", ")} formed in ${cluster.formationMs} ms`,
    );
  }, 180_000);

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    const n = names;
    if (n) {
      const via = survivor ?? cluster?.nodes[0];
      await cleanup({ ...n, amqpUrl: via?.url ?? n.amqpUrl }).catch(() =>
        rmSync(n.dir, { recursive: true, force: true }),
      );
    }
    await cluster?.stop();
  }, 120_000);

  it("services given the node list move to a surviving node on their own: nothing lost, each reading stored once, neither restarted", async () => {
    const n = faultNames("scale-cluster", { amqpUrl: cluster.nodes[0]?.url });
    names = n;
    const env = { ...n.env, AMQP_URL: cluster.url };
    // The gateway declares the queue, so its leader is on the gateway's node (RabbitMQ's client-local locator):
    // killing the leader then also takes the gateway's connection.
    const gateway = await startService("gateway", env);
    services.push(gateway);
    await untilReady(gateway);
    const processor = await startService("processor", env);
    services.push(processor);
    await untilReady(processor);

    const before = await cluster.placement(n.queue);
    expect(before.type).toBe("quorum");
    expect([...before.members].sort(), "replicas on every node").toEqual(
      cluster.nodes.map((node) => node.node).sort(),
    );
    const leader = cluster.byName(before.leader);
    survivor = cluster.nodes.find((node) => node !== leader);
    const nodesBefore = { gateway: connectedNode(gateway), processor: connectedNode(processor) };

    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 1_717 });
    await until("the first readings are stored", 30_000, async () => {
      return (await metric(processor.httpPort, STORED)) >= READINGS / 8;
    });
    const vm = await rabbitVm(leader);
    const ackedAtKill = stream.acked();
    expect(ackedAtKill, "the node must die mid-stream").toBeLessThan(READINGS);
    const publishing = sampleGrowth(gateway, PUBLISHED);
    const storing = sampleGrowth(processor, STORED);
    await until("both counters are seen growing", 10_000, async () => {
      const recently = Date.now() - 500;
      return publishing.grewSince(recently) && storing.grewSince(recently);
    });
    const killedAt = Date.now();
    await killRabbit(leader, vm);
    const killTookMs = Date.now() - killedAt;
    const goneAt = Date.now();
    await until("publishing and storing go on after the kill", 90_000, async () => {
      return publishing.grewSince(goneAt) && storing.grewSince(goneAt);
    });
    for (const s of services)
      await until("ready again", 60_000, async () => (await httpGet(s.httpPort, "/readyz")).status === 200);
    const readyAgainAfterMs = Date.now() - killedAt;

    const counts = await expectStoredExactlyOnce(
      { ...n, amqpUrl: survivor?.url ?? n.amqpUrl },
      stream,
      90_000,
    );
    const { duplicates, deliveries } = await expectDeliveriesAccounted(processor, counts.stored, {
      reconnected: true,
    });
    for (const [name, s] of Object.entries({ gateway, processor })) {
      expect(s.proc.exitCode, `${name} kept running`).toBeNull();
      expect(s.proc.signalCode, `${name} kept running`).toBeNull();
    }
    expect(connectedNode(gateway), "the gateway left the dead node").not.toBe(
      `${leader.host}:${leader.port}`,
    );
    expect(gateway.logs.some((l) => l.msg === "amqp connection lost; reconnecting")).toBe(true);
    const after = await cluster.placement(n.queue, survivor);
    expect(after.leader, "a surviving replica leads").not.toBe(leader.node);

    report("rabbitmq cluster of 3, queue leader SIGKILLed mid-stream", {
      ...counts,
      duplicates,
      deliveries,
      killedLeader: leader.node,
      newLeader: after.leader,
      nodesBefore,
      nodesAfter: { gateway: connectedNode(gateway), processor: connectedNode(processor) },
      ackedAtKill,
      killTookMs,
      publishingStalledMs: await publishing.longestStall(killedAt, goneAt),
      consumingStalledMs: await storing.longestStall(killedAt, goneAt),
      readyAgainAfterMs,
      clusterFormationMs: cluster.formationMs,
    });
  }, 300_000);
});
