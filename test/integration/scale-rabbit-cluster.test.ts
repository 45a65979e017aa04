import { rmSync } from "node:fs";
import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { declareTopology } from "../../amqp/topology.js";
import type { PrivateRabbit } from "../../scripts/private-brokers.js";
import { type PrivateRabbitCluster, startPrivateRabbitCluster } from "../../scripts/rabbit-cluster.js";
import { killRabbit, rabbitVm } from "../../scripts/rabbit-faults.js";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  startStream,
  until,
  untilStored,
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

/** The server port (one per node here) of each client connection the cluster lists, by its connection name. */
async function connectionsOf(via: PrivateRabbit): Promise<{ name: string; port: number }[]> {
  const rows = JSON.parse(
    await via.ctl("list_connections", "port", "client_properties", "--formatter", "json"),
  ) as { port: number; client_properties: [string, string, unknown][] }[];
  return rows.map((r) => ({
    port: r.port,
    name: String(r.client_properties.find(([key]) => key === "connection_name")?.[2] ?? ""),
  }));
}

/** Starts of a service tried at most, each landing on one of three nodes at random (1 - (2/3)^12 > 99%). */
const PLACEMENT_ATTEMPTS = 12;

/**
 * Starts `command` until its AMQP connection is on `node`, as both the service's log and the cluster's own list of
 * connections (asked of `via`) say: the session starts from a random node of AMQP_URL's list (so services spread
 * over a cluster), whatever the order. A service that landed elsewhere is stopped (SIGTERM, exit 0) and started
 * again. Resolves with the service and how many starts it took.
 */
async function startOnNode(
  command: "gateway" | "processor",
  env: Record<string, string>,
  node: PrivateRabbit,
  via: PrivateRabbit,
  connectionName: (name: string) => boolean,
): Promise<{ service: Service; starts: number }> {
  for (let starts = 1; starts <= PLACEMENT_ATTEMPTS; starts++) {
    const service = await startService(command, env);
    let onNode = false;
    try {
      await untilReady(service);
      const listed = (await connectionsOf(via)).filter((c) => connectionName(c.name));
      expect(listed, `${command}: one AMQP connection listed by the cluster`).toHaveLength(1);
      onNode = listed[0]?.port === node.port;
      expect(
        connectedNode(service) === `${node.host}:${node.port}`,
        `${command}: log and cluster agree`,
      ).toBe(onNode);
    } catch (err) {
      await service.stop("SIGKILL");
      throw err;
    }
    if (onNode) return { service, starts };
    expect(await service.stop("SIGTERM")).toBe(0);
  }
  throw new Error(`${command} never connected to ${node.node} in ${PLACEMENT_ATTEMPTS} starts`);
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

  it("gateway and processor both connected to the leader move to a surviving node on their own: nothing lost, each reading stored once, neither restarted", async () => {
    const n = faultNames("scale-cluster", { amqpUrl: cluster.nodes[0]?.url });
    names = n;
    // The test declares the queues (as the services would) through the first node, so the queue's leader is there
    // (RabbitMQ's client-local leader locator); both services are then placed on the leader, so killing it takes
    // both connections and both must fail over.
    const first = cluster.nodes[0] as PrivateRabbit;
    const conn = await amqp.connect(first.url);
    try {
      await declareTopology(await conn.createChannel(), n.queue, "quorum");
    } finally {
      await conn.close();
    }
    const before = await cluster.placement(n.queue);
    expect(before.type).toBe("quorum");
    expect([...before.members].sort(), "replicas on every node").toEqual(
      cluster.nodes.map((node) => node.node).sort(),
    );
    const leader = cluster.byName(before.leader);
    survivor = cluster.nodes.find((node) => node !== leader);
    const via = survivor as PrivateRabbit;
    // The leader first in each service's list, as an operator would write it; the session still starts at random.
    const ordered = [leader, ...cluster.nodes.filter((node) => node !== leader)];
    const env = { ...n.env, AMQP_URL: ordered.map((node) => node.url).join(",") };
    const placed = {
      gateway: await startOnNode("gateway", env, leader, via, (c) => c.startsWith("telemetry-gateway")),
      processor: await startOnNode("processor", env, leader, via, (c) => c === "telemetry-processor"),
    };
    const gateway = placed.gateway.service;
    const processor = placed.processor.service;
    services.push(gateway, processor);
    const nodesBefore = { gateway: connectedNode(gateway), processor: connectedNode(processor) };

    const stream = startStream(n, { count: READINGS, rate: RATE, seed: 1_717 });
    await untilStored(processor.httpPort, READINGS / 8);
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
    for (const [name, s] of Object.entries({ gateway, processor })) {
      expect(connectedNode(s), `the ${name} left the dead node`).not.toBe(`${leader.host}:${leader.port}`);
      expect(
        s.logs.some((l) => l.msg === "amqp connection lost; reconnecting"),
        `the ${name} lost its connection`,
      ).toBe(true);
    }
    const survivors = new Set(cluster.nodes.filter((node) => node !== leader).map((node) => node.port));
    const listedAfter = await connectionsOf(via);
    for (const name of ["telemetry-gateway", "telemetry-processor"]) {
      const on = listedAfter.filter((c) => c.name.startsWith(name)).map((c) => c.port);
      expect(on, `${name} connected once, to a surviving node`).toHaveLength(1);
      expect(survivors.has(on[0] as number), `${name} on a surviving node`).toBe(true);
    }
    const after = await cluster.placement(n.queue, survivor);
    expect(after.leader, "a surviving replica leads").not.toBe(leader.node);

    report("rabbitmq cluster of 3, queue leader SIGKILLed mid-stream", {
      ...counts,
      duplicates,
      deliveries,
      killedLeader: leader.node,
      newLeader: after.leader,
      nodesBefore,
      startsToLandOnLeader: { gateway: placed.gateway.starts, processor: placed.processor.starts },
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
