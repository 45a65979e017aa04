/** Private RabbitMQ nodes joined into one real cluster on this machine, for the scale-out tests. */
import { type Running, running } from "../common/pipeline.js";
import { type PrivateRabbit, type PrivateRabbitOptions, startPrivateRabbit } from "./private-brokers.js";

/** Three nodes: the smallest cluster whose quorum queues survive the loss of any one node. */
const DEFAULT_CLUSTER_SIZE = 3;

/** One quorum queue as `rabbitmqctl list_queues name type leader members` reports it. */
export interface QuorumPlacement {
  readonly name: string;
  readonly type: string;
  /** Erlang node name of the replica that leads the queue. */
  readonly leader: string;
  /** Erlang node names of every replica. */
  readonly members: readonly string[];
}

/** Private RabbitMQ nodes joined into one cluster; only this object ever stops them. */
export interface PrivateRabbitCluster extends Running {
  /** The nodes, the first being the one the others joined. */
  readonly nodes: readonly PrivateRabbit[];
  /** Every node's `amqp://guest:guest@host:port`, separated by commas: AMQP_URL's node list. */
  readonly url: string;
  /** From the first `rabbitmq-server -detached` to the last node running as a member of the cluster. */
  readonly formationMs: number;
  /**
   * Where `queue`'s replicas are and which one leads, asked of `via` (default the first node; ask a node that
   * runs). Throws when the queue does not exist.
   */
  placement(queue: string, via?: PrivateRabbit): Promise<QuorumPlacement>;
  /** The node of this cluster whose Erlang node name is `name`. */
  byName(name: string): PrivateRabbit;
  /** Halts every node (a node killed earlier is only cleaned up) and deletes their directories. */
  stop(): Promise<void>;
}

/**
 * Starts `size` (3) private nodes as `startPrivateRabbit` does, at once, then joins every node after the first to
 * it with `stop_app`, `join_cluster <first>`, `start_app` (docs/architecture.md, "Private brokers"). The
 * nodes can cluster because the Debian wrapper runs each as the `rabbitmq` user, so they share that user's Erlang
 * cookie (/var/lib/rabbitmq/.erlang.cookie), as `rabbitmqctl` does. Resolves once `cluster_status` of the first
 * node lists every node running; rejects (after halting every node) otherwise.
 */
export async function startPrivateRabbitCluster(
  size: number = DEFAULT_CLUSTER_SIZE,
  opts: PrivateRabbitOptions = {},
): Promise<PrivateRabbitCluster> {
  const started = Date.now();
  const attempts = await Promise.allSettled(Array.from({ length: size }, () => startPrivateRabbit(opts)));
  const nodes = attempts.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
  const haltAll = async () => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  try {
    const failed = attempts.find((a): a is PromiseRejectedResult => a.status === "rejected");
    if (failed) throw failed.reason;
    const [first, ...others] = nodes as [PrivateRabbit, ...PrivateRabbit[]];
    // One at a time: two nodes joining the same node at once can race on its schema (mnesia) transaction.
    for (const node of others) {
      await node.stopApp();
      await node.ctl("join_cluster", first.node);
      await node.startApp();
    }
    const status = JSON.parse(await first.ctl("cluster_status", "--formatter", "json")) as {
      running_nodes?: string[];
    };
    const missing = nodes.filter((n) => !status.running_nodes?.includes(n.node)).map((n) => n.node);
    if (missing.length > 0)
      throw new Error(`nodes not running in the cluster of ${first.node}: ${missing.join(", ")}`);
  } catch (err) {
    await haltAll();
    throw err;
  }
  const formationMs = Date.now() - started;
  const cluster = {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    formationMs,
    async placement(queue: string, via: PrivateRabbit = nodes[0] as PrivateRabbit): Promise<QuorumPlacement> {
      const rows = JSON.parse(
        await via.ctl("list_queues", "name", "type", "leader", "members", "--formatter", "json"),
      ) as QuorumPlacement[];
      const row = rows.find((r) => r.name === queue);
      if (!row) throw new Error(`no queue ${queue} on the cluster of ${via.node}`);
      return row;
    },
    byName(name: string): PrivateRabbit {
      const node = nodes.find((n) => n.node === name);
      if (!node) throw new Error(`${name} is not a node of this cluster`);
      return node;
    },
  };
  return running(cluster, haltAll);
}
