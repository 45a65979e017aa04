import amqp, { type ConfirmChannel, type GetMessage, type Options } from "amqplib";
import { queueNames } from "../amqp/topology.js";
import { defineCommand } from "../common/command.js";
import { parsers, redactUrl, setting, splitUrlList } from "../common/config.js";
import { amqpSecurity, common, reportFormat, securityProblem } from "../common/settings.js";
import { readTls, type TlsMaterial } from "../common/tls.js";
import { AVRO_CONTENT_TYPE, encodeEnvelope } from "../gateway/encode.js";
import { parsePayload } from "../gateway/validate.js";
import { SchemaRegistry } from "../schemas/index.js";
import { PROBE_TIMEOUT_MS, reasonOf } from "./probe.js";

/** Header counting how many times a message was replayed. */
export const REPLAY_COUNT_HEADER = "x-replay-count";
/** Default of `--max-replays`: a message replayed this often and back again is left for a person to look at. */
const MAX_REPLAYS = 5;

type Headers = Readonly<Record<string, unknown>>;

/** Why a message is where it is: the gateway's `reason` (rejected) or the processor's `x-failure-reason` (dead). */
export function failureReason(headers: Headers | undefined): string {
  const r = headers?.reason ?? headers?.["x-failure-reason"];
  return typeof r === "string" ? r : r instanceof Buffer ? r.toString() : "(no reason given)";
}

/** How many times a message was replayed already (0 when never). */
export function replayCount(headers: Headers | undefined): number {
  const n = Number(headers?.[REPLAY_COUNT_HEADER] ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

const text = (v: unknown): string | undefined =>
  typeof v === "string" ? v : v instanceof Buffer ? v.toString() : undefined;

/** One message as the dry run lists it. */
export interface Listed {
  readonly reason: string;
  readonly kind?: string;
  readonly topic?: string;
  readonly message_id?: string;
  readonly replay_count: number;
  readonly bytes: number;
  readonly received_at?: string;
}

function listed(m: GetMessage): Listed {
  const h = m.properties.headers as Headers | undefined;
  const receivedAt = Number(h?.received_at ?? Number.NaN);
  const kind = text(h?.["x-failure-kind"]);
  const topic = text(h?.topic);
  const id = text(m.properties.messageId);
  return {
    reason: failureReason(h),
    ...(kind ? { kind } : {}),
    ...(topic ? { topic } : {}),
    ...(id ? { message_id: id } : {}),
    replay_count: replayCount(h),
    bytes: m.content.length,
    ...(Number.isFinite(receivedAt) ? { received_at: new Date(receivedAt).toISOString() } : {}),
  };
}

/** A publish to make before the source message may be acked. */
interface Republish {
  readonly queue: string;
  readonly body: Buffer;
  readonly options: Options.Publish;
}

/**
 * What a message from `<QUEUE>.dead` becomes: the same body and properties on `<QUEUE>`, one more replay counted.
 */
export function fromDead(m: GetMessage, queue: string): Republish[] {
  const p = m.properties;
  const headers = {
    ...(p.headers as Headers | undefined),
    [REPLAY_COUNT_HEADER]: replayCount(p.headers) + 1,
  };
  const options: Options.Publish = { headers, persistent: true };
  for (const key of [
    "contentType",
    "contentEncoding",
    "messageId",
    "correlationId",
    "timestamp",
    "type",
    "appId",
  ] as const) {
    if (p[key] !== undefined && p[key] !== null) Object.assign(options, { [key]: p[key] });
  }
  return [{ queue, body: m.content, options }];
}

/**
 * What a message from `<QUEUE>.rejected` becomes, through the gateway's own validation and encoding with the
 * time the gateway first received it (so a reading without `ts` gets the same time, and the same key, again):
 * its readings on `<QUEUE>`, or, still invalid, the raw payload back on `<QUEUE>.rejected` with the new reason.
 */
export function fromRejected(
  m: GetMessage,
  c: { queue: string; topicPrefix: string; gatewayId: string; schemas: SchemaRegistry },
): { publishes: Republish[]; valid: boolean; reason?: string } {
  const h = (m.properties.headers ?? {}) as Headers;
  const names = queueNames(c.queue);
  const topic = text(h.topic) ?? "";
  const gatewayId = text(h.gateway_id) ?? c.gatewayId;
  const receivedAt = Number(h.received_at);
  const at = Number.isSafeInteger(receivedAt) ? receivedAt : Date.now();
  const parsed = parsePayload(topic, m.content, { topicPrefix: c.topicPrefix, gatewayId, receivedAt: at });
  const count = replayCount(h) + 1;
  const envelope = parsed.ok
    ? ({ kind: "readings", readings: parsed.readings } as const)
    : ({ kind: "rejected", topic, payload: m.content, reason: parsed.reason, receivedAt: at } as const);
  // Single-reading messages, as the processor of any release reads them.
  const publishes = encodeEnvelope(envelope, c.schemas, gatewayId, true).map((out) => {
    const properties: Options.Publish =
      out.route === "readings"
        ? {
            contentType: AVRO_CONTENT_TYPE,
            messageId: out.messageId,
            timestamp: Math.floor(out.receivedAt / 1000),
          }
        : out.properties;
    return {
      queue: out.route === "readings" ? names.readings : names.rejected,
      body: out.route === "readings" ? c.schemas.frameSingle(out.datum) : out.body,
      options: {
        ...properties,
        persistent: true,
        headers: { ...(properties.headers as Headers | undefined), [REPLAY_COUNT_HEADER]: count },
      },
    };
  });
  return parsed.ok ? { publishes, valid: true } : { publishes, valid: false, reason: parsed.reason };
}

/**
 * Publishes each message `mandatory` on the confirm channel and resolves once every one is confirmed; rejects if
 * any is nacked or returned (routed to no queue: the target does not exist), so the caller keeps the source.
 */
async function publishConfirmed(ch: ConfirmChannel, publishes: readonly Republish[]): Promise<void> {
  let returned: string | undefined;
  const onReturn = (msg: { fields: { routingKey: string; replyText?: string } }) => {
    returned = `returned by RabbitMQ (${msg.fields.replyText ?? "NO_ROUTE"}): no queue ${msg.fields.routingKey}`;
  };
  ch.on("return", onReturn);
  try {
    await Promise.all(
      publishes.map(
        (p) =>
          new Promise<void>((resolve, reject) => {
            ch.publish("", p.queue, p.body, { ...p.options, mandatory: true }, (err) =>
              err ? reject(new Error("nacked by RabbitMQ")) : resolve(),
            );
          }),
      ),
    );
    // A basic.return always arrives before the basic.ack of the same message, so it is known by now.
    if (returned) throw new Error(returned);
  } finally {
    ch.off("return", onReturn);
  }
}

async function connect(url: string, tls: TlsMaterial): Promise<amqp.ChannelModel> {
  let last: unknown;
  for (const node of splitUrlList(url)) {
    try {
      return await amqp.connect(node, { ...tls, timeout: PROBE_TIMEOUT_MS });
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`RabbitMQ ${redactUrl(url)}: ${reasonOf(last)}`);
}

/** What a replay did, as `--format json` prints it. */
export interface ReplayResult {
  readonly from: string;
  /** Messages re-sent to `<QUEUE>` (rejected: payloads that now pass validation). */
  readonly replayed: number;
  /** Readings those messages carried on to `<QUEUE>`. */
  readonly readings: number;
  /** Rejected payloads still invalid, sent back to `<QUEUE>.rejected` with the new reason. */
  readonly still_invalid: number;
  /** Messages left where they are because they were replayed `--max-replays` times already. */
  readonly skipped: readonly Listed[];
}

/**
 * `telemetry replay --from rejected|dead`: lists (`--dry-run`) or re-sends what is on `<QUEUE>.rejected` or
 * `<QUEUE>.dead`. Each message is taken with a manual-ack `basic.get`, re-published `mandatory` on a confirm
 * channel, and acked on its source only after every re-publish is confirmed and none returned: killed at any
 * moment, a message is either still on its source (unacked, so RabbitMQ puts it back) or already on its target
 * (and at most the one in hand is on both; the store's key absorbs the copy). At most the number of messages on the
 * source when it starts are taken, so what goes back to `.rejected` is not taken again in the same run.
 */
export const replayCommand = defineCommand({
  name: "replay",
  usage: "telemetry replay --from rejected|dead [options]",
  summary:
    "Lists (--dry-run) or re-sends the messages on <QUEUE>.rejected (through the gateway's validation, on to " +
    "<QUEUE>, or back if still invalid) or <QUEUE>.dead (to <QUEUE>, as they are); each leaves its source only " +
    "after its re-publish is confirmed, so a replay killed at any moment loses nothing.",
  spec: {
    from: setting({
      flag: "from",
      default: undefined as "rejected" | "dead" | undefined,
      description: "Which queue to replay: rejected or dead (required).",
      parse: parsers.oneOf("rejected", "dead"),
    }),
    limit: setting({
      flag: "limit",
      default: undefined as number | undefined,
      defaultLabel: "every message on the queue when it starts",
      description: "Most messages to list or replay.",
      parse: parsers.int(1, 100_000_000),
    }),
    dryRun: setting({
      flag: "dry-run",
      default: false,
      boolean: true,
      description: "List what is there and why, and change nothing.",
      parse: parsers.bool,
    }),
    maxReplays: setting({
      flag: "max-replays",
      default: MAX_REPLAYS,
      description:
        "A message already replayed this many times is left where it is (and reported), not looped.",
      parse: parsers.int(1, 1_000),
    }),
    format: reportFormat,
    amqpUrl: common.amqpUrl,
    ...amqpSecurity,
    queue: common.queue,
    topicPrefix: common.topicPrefix,
    gatewayId: common.gatewayId,
  },
  check: (c) => securityProblem(c) ?? (c.from ? undefined : "--from is required: rejected or dead"),
  run: async (config) => {
    const names = queueNames(config.queue);
    const from = config.from === "rejected" ? names.rejected : names.dead;
    const schemas = config.from === "rejected" ? SchemaRegistry.load() : undefined;
    const tls = readTls({
      caFile: config.amqpCaFile,
      certFile: config.amqpCertFile,
      keyFile: config.amqpKeyFile,
    });
    const conn = await connect(config.amqpUrl, tls).catch((err: Error) => {
      process.stderr.write(`telemetry replay: ${err.message}\n`);
      return undefined;
    });
    if (!conn) return 1;
    let failed: string | undefined;
    conn.on("error", (err: Error) => {
      failed = reasonOf(err);
    });
    const ch = await conn.createConfirmChannel();
    ch.on("error", (err: Error) => {
      failed = reasonOf(err);
    });
    try {
      const depth = (await ch.checkQueue(from)).messageCount;
      const todo = Math.min(depth, config.limit ?? depth);
      const list: Listed[] = [];
      const skipped: Listed[] = [];
      let replayed = 0;
      let readings = 0;
      let stillInvalid = 0;
      for (let i = 0; i < todo && !failed; i++) {
        const m = await ch.get(from, { noAck: false });
        if (m === false) break;
        if (config.dryRun) {
          // Held unacked until the channel closes, which puts every one back: nothing changes.
          list.push(listed(m));
          continue;
        }
        if (replayCount(m.properties.headers) >= config.maxReplays) {
          // Held unacked so the next get does not return it again; it goes back when the channel closes.
          skipped.push(listed(m));
          continue;
        }
        if (schemas) {
          const r = fromRejected(m, { ...config, schemas });
          await publishConfirmed(ch, r.publishes);
          if (r.valid) {
            replayed++;
            readings += r.publishes.length;
          } else stillInvalid++;
        } else {
          await publishConfirmed(ch, fromDead(m, names.readings));
          replayed++;
          readings++;
        }
        ch.ack(m);
      }
      if (failed) throw new Error(failed);
      if (config.dryRun) {
        process.stdout.write(
          config.format === "json" ? `${JSON.stringify(list, null, 2)}\n` : listTable(from, depth, list),
        );
        return 0;
      }
      const result: ReplayResult = { from, replayed, readings, still_invalid: stillInvalid, skipped };
      if (config.format === "json") process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        process.stdout.write(
          `replayed ${replayed} message(s) from ${from} to ${names.readings} (${readings} reading(s))` +
            `${config.from === "rejected" ? `; ${stillInvalid} still invalid, back on ${names.rejected}` : ""}` +
            `; ${skipped.length} left on ${from} (replayed ${config.maxReplays} times already)\n`,
        );
        if (skipped.length) process.stdout.write(listTable(from, depth, skipped));
      }
      return 0;
    } catch (err) {
      process.stderr.write(
        `telemetry replay: ${reasonOf(err)}; what was not confirmed is still on ${from}\n`,
      );
      return 1;
    } finally {
      await ch.close().catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
  },
});

function listTable(from: string, depth: number, list: readonly Listed[]): string {
  const lines = [
    `${from}: ${depth} message(s); ${list.length} listed`,
    "  #  REPLAYS  BYTES  TOPIC / ID  REASON",
  ];
  list.forEach((m, i) => {
    lines.push(
      `${String(i + 1).padStart(3)}  ${String(m.replay_count).padStart(7)}  ${String(m.bytes).padStart(5)}  ` +
        `${m.topic ?? m.message_id ?? "-"}  ${m.reason}`,
    );
  });
  return `${lines.join("\n")}\n`;
}
