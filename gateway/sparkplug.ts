import { ID_PATTERN, ID_RULE, MIN_TS, type Reading } from "../schemas/index.js";
import {
  DataType,
  decodeSparkplug,
  has,
  i64,
  type SparkplugMetric,
  type SparkplugPayload,
  u64,
} from "./sparkplug-payload.js";
import { MAX_FUTURE_MS, sensorFromName } from "./validate.js";

/** Sparkplug B's topic namespace (specification, "Topic Namespace Elements"). */
export const SPARKPLUG_NAMESPACE = "spBv1.0";
/** The message types the gateway subscribes to, for nodes and for their devices. */
const NODE_TYPES = ["NBIRTH", "NDATA", "NDEATH"] as const;
const DEVICE_TYPES = ["DBIRTH", "DDATA", "DDEATH"] as const;
/** A node is asked for a rebirth at most once in this long, however many of its messages cannot be resolved. */
export const REBIRTH_INTERVAL_MS = 5_000;
const MAX_UNIT_LENGTH = 32;
/** Sparkplug's `seq` counts 0 to 255 and wraps. */
const SEQ_MODULO = 256;

/** The MQTT filters for Sparkplug B groups: each group's node and device birth, data and death messages. */
export function sparkplugFilters(groups: readonly string[]): string[] {
  return groups.flatMap((g) => [
    ...NODE_TYPES.map((t) => `${SPARKPLUG_NAMESPACE}/${g}/${t}/+`),
    ...DEVICE_TYPES.map((t) => `${SPARKPLUG_NAMESPACE}/${g}/${t}/+/+`),
  ]);
}

/** What a birth told about a metric: data may later carry only its alias. */
interface MetricDef {
  readonly name: string;
  readonly datatype: number | undefined;
  readonly unit: string | null;
}

/** What the gateway knows of one edge node (and its devices) since its last NBIRTH. */
interface NodeState {
  /** Alias and name maps of the node (key "") and of each device (key: device id). */
  readonly scopes: Map<string, Scope>;
  /** The last `seq` seen, undefined before the first. */
  seq: number | undefined;
  /** When a rebirth was last asked for (0: never). */
  rebirthAskedAt: number;
  /** Loaded from a snapshot, no message seen since: the next one must continue the saved `seq`. */
  restored?: boolean;
}

/** A metric definition as saved: alias (null: none), name, datatype (null: unknown), unit. */
type SavedDef = [number | null, string, number | null, string | null];

/**
 * The alias maps and last `seq` of every node, as JSON can hold them, so that a restarted gateway resolves data by
 * alias without a rebirth (see `SparkplugDecoder.snapshot`).
 */
export interface AliasSnapshot {
  readonly version: 1;
  readonly nodes: Record<string, { seq: number | null; scopes: Record<string, SavedDef[]> }>;
}

interface Scope {
  readonly byAlias: Map<number, MetricDef>;
  readonly byName: Map<string, MetricDef>;
}

/** What one Sparkplug message becomes. */
export interface SparkplugResult {
  /** The readings to store (none for a death, or when `reason` is set). */
  readonly readings: Reading[];
  /** Set when the whole payload goes to `<QUEUE>.rejected`, with this reason. */
  readonly reason?: string;
  /** Metrics that are not readings (String, DateTime, Bytes, DataSet, Template, null values): counted, not stored. */
  readonly notStored: number;
  /** The message's `seq` did not follow the one before. */
  readonly seqGap: boolean;
  /** Publish a rebirth request on this topic (NCMD of the node); already rate-limited per node. */
  readonly rebirthTopic?: string;
}

/**
 * Sparkplug B decoding with the state it needs (specification 3.0): births map aliases to names, datatypes and
 * `engUnit`s per node and device; data carrying aliases is resolved with them; `seq` is followed per node. One per
 * gateway, fed every Sparkplug message in arrival order. Pure apart from the clock passed in: the caller publishes
 * the rebirth requests it asks for and sends the rejected payloads on.
 */
export class SparkplugDecoder {
  private readonly nodes = new Map<string, NodeState>();

  /** `onLearned` is called after every birth or device death, when a snapshot would differ. */
  constructor(
    private readonly gatewayId: string,
    private readonly onLearned: () => void = () => {},
  ) {}

  /**
   * What the decoder knows, for `restore` after a restart. The saved `seq` is a node's latest only if the snapshot
   * was taken after its last message (at a clean stop); otherwise the restored node's next message does not follow
   * it and is refused with a rebirth request, so maps a node changed while the gateway was away are never used.
   */
  snapshot(): AliasSnapshot {
    const nodes: AliasSnapshot["nodes"] = {};
    for (const [key, state] of this.nodes) {
      if (state.scopes.size === 0) continue;
      const scopes: Record<string, SavedDef[]> = {};
      for (const [scopeKey, scope] of state.scopes) {
        const aliasOf = new Map([...scope.byAlias].map(([alias, def]) => [def, alias]));
        scopes[scopeKey] = [...scope.byName.values()].map((d) => [
          aliasOf.get(d) ?? null,
          d.name,
          d.datatype ?? null,
          d.unit,
        ]);
      }
      nodes[key] = { seq: state.seq ?? null, scopes };
    }
    return { version: 1, nodes };
  }

  /** Takes up the maps of a snapshot (one of another version, or not one at all, is ignored: rebirths rebuild them). */
  restore(snapshot: unknown): void {
    const nodes =
      (snapshot as Partial<AliasSnapshot> | null)?.version === 1 ? (snapshot as AliasSnapshot).nodes : {};
    for (const [key, saved] of Object.entries(nodes)) {
      const scopes = new Map<string, Scope>();
      for (const [scopeKey, defs] of Object.entries(saved.scopes)) {
        const scope: Scope = { byAlias: new Map(), byName: new Map() };
        for (const [alias, name, datatype, unit] of defs) {
          const def: MetricDef = { name, datatype: datatype ?? undefined, unit };
          scope.byName.set(name, def);
          if (alias !== null) scope.byAlias.set(alias, def);
        }
        scopes.set(scopeKey, scope);
      }
      this.nodes.set(key, { scopes, seq: saved.seq ?? undefined, rebirthAskedAt: 0, restored: true });
    }
  }

  /** True for a topic in Sparkplug B's namespace (the caller routes it here rather than to JSON). */
  static owns(topic: string): boolean {
    return topic.startsWith(`${SPARKPLUG_NAMESPACE}/`);
  }

  /**
   * Turns one Sparkplug message into readings. `device_id` is `<node>` or `<node>.<device>`, `sensor` the metric
   * name made an id, `ts` the metric's timestamp else the payload's else `receivedAt`, tag `sparkplug_group`.
   * Unknown aliases, an unknown device, undecodable bytes or ids that break the id rule refuse the whole payload.
   */
  decode(topic: string, bytes: Buffer, receivedAt: number): SparkplugResult {
    const parts = topic.split("/");
    const [, group = "", type = "", node = "", device] = parts;
    const isDevice = type.startsWith("D");
    if (parts.length !== (isDevice ? 5 : 4) || ![...NODE_TYPES, ...DEVICE_TYPES].some((t) => t === type)) {
      return refused("topic is not spBv1.0/<group>/<N|D><BIRTH|DATA|DEATH>/<node>[/<device>]");
    }
    const deviceId = device === undefined ? node : `${node}.${device}`;
    if (!ID_PATTERN.test(node) || (device !== undefined && !ID_PATTERN.test(device)))
      return refused(`edge node and device ids must be ${ID_RULE}`);
    if (!ID_PATTERN.test(deviceId)) return refused(`<node>.<device> must be ${ID_RULE}`);
    let payload: SparkplugPayload;
    try {
      payload = decodeSparkplug(bytes);
    } catch (err) {
      return refused(`payload is not a Sparkplug B payload: ${(err as Error).message}`);
    }
    const key = `${group}/${node}`;
    const ncmd = `${SPARKPLUG_NAMESPACE}/${group}/NCMD/${node}`;
    if (type === "NDEATH") return { readings: [], notStored: 0, seqGap: false };

    let state = this.nodes.get(key);
    const seq = has(payload, "seq") && payload.seq !== undefined ? u64(payload.seq) : undefined;
    let seqGap = false;
    if (state?.restored && type !== "NBIRTH") {
      state.restored = false;
      if (seq === undefined || state.seq === undefined || seq !== (state.seq + 1) % SEQ_MODULO) {
        state.scopes.clear();
        state.seq = seq;
        const why =
          "seq does not follow the one kept before the gateway restarted: its aliases may have changed";
        return this.unresolved(key, ncmd, receivedAt, why);
      }
    }
    if (type === "NBIRTH") {
      state = { scopes: new Map(), seq, rebirthAskedAt: state?.rebirthAskedAt ?? 0 };
      this.nodes.set(key, state);
    } else if (state && seq !== undefined) {
      seqGap = state.seq !== undefined && seq !== (state.seq + 1) % SEQ_MODULO;
      state.seq = seq;
    }
    const scopeKey = device ?? "";
    if (type === "NBIRTH" || type === "DBIRTH") {
      if (!state) return this.unresolved(key, ncmd, receivedAt, "DBIRTH before its node's NBIRTH");
      state.scopes.set(scopeKey, learn(payload.metrics));
      this.onLearned();
    }
    const rebirth = (why: string) => this.unresolved(key, ncmd, receivedAt, why, seqGap);
    if (type === "DDEATH") {
      state?.scopes.delete(scopeKey);
      this.onLearned();
      return { readings: [], notStored: 0, seqGap, ...this.askRebirth(key, ncmd, receivedAt, seqGap) };
    }
    const scope = state?.scopes.get(scopeKey);

    const payloadTs =
      has(payload, "timestamp") && payload.timestamp !== undefined ? u64(payload.timestamp) : receivedAt;
    const readings: Reading[] = [];
    let notStored = 0;
    for (const [i, metric] of payload.metrics.entries()) {
      const def = resolve(metric, scope);
      if (def === undefined) {
        if (!state) return rebirth(`data from edge node ${node} whose NBIRTH this gateway has not seen`);
        if (device !== undefined && !scope)
          return rebirth(`data from device ${device} whose DBIRTH this gateway has not seen`);
        return rebirth(
          `metric ${i} has alias ${has(metric, "alias") ? u64(metric.alias ?? 0) : "(none)"} and no name, and no birth named it`,
        );
      }
      const value = numericValue(metric, def.datatype);
      if (value === undefined) {
        notStored++;
        continue;
      }
      const ts =
        has(metric, "timestamp") && metric.timestamp !== undefined ? u64(metric.timestamp) : payloadTs;
      if (ts < MIN_TS || ts > receivedAt + MAX_FUTURE_MS)
        return refused(`metric ${def.name}: timestamp ${ts} is before 2000 or more than 24 h ahead`);
      readings.push({
        device_id: deviceId,
        sensor: sensorFromName(def.name),
        ts,
        value,
        unit: engUnit(metric) ?? def.unit,
        seq: null,
        gateway_id: this.gatewayId,
        received_at: receivedAt,
        quality: "good",
        tags: { sparkplug_group: group },
      });
    }
    return { readings, notStored, seqGap, ...this.askRebirth(key, ncmd, receivedAt, seqGap) };
  }

  /** Refuses the payload because it cannot be resolved, and asks the node for a rebirth (rate-limited). */
  private unresolved(key: string, ncmd: string, now: number, why: string, seqGap = false): SparkplugResult {
    return { ...refused(why), seqGap, ...this.askRebirth(key, ncmd, now, true) };
  }

  private askRebirth(key: string, ncmd: string, now: number, wanted: boolean): { rebirthTopic?: string } {
    if (!wanted) return {};
    let state = this.nodes.get(key);
    if (!state) {
      state = { scopes: new Map(), seq: undefined, rebirthAskedAt: 0 };
      this.nodes.set(key, state);
    }
    if (state.rebirthAskedAt !== 0 && now - state.rebirthAskedAt < REBIRTH_INTERVAL_MS) return {};
    state.rebirthAskedAt = now;
    return { rebirthTopic: ncmd };
  }
}

function refused(reason: string): SparkplugResult {
  return { readings: [], reason, notStored: 0, seqGap: false };
}

/** A birth's metrics as alias and name maps. */
function learn(metrics: readonly SparkplugMetric[]): Scope {
  const scope: Scope = { byAlias: new Map(), byName: new Map() };
  for (const m of metrics) {
    if (!m.name) continue;
    const def: MetricDef = { name: m.name, datatype: m.datatype, unit: engUnit(m) };
    scope.byName.set(m.name, def);
    if (has(m, "alias") && m.alias !== undefined) scope.byAlias.set(u64(m.alias), def);
  }
  return scope;
}

/** The metric's name, datatype and unit: from its own fields, completed by what the birth said. */
function resolve(m: SparkplugMetric, scope: Scope | undefined): MetricDef | undefined {
  const known = m.name
    ? scope?.byName.get(m.name)
    : has(m, "alias") && m.alias !== undefined
      ? scope?.byAlias.get(u64(m.alias))
      : undefined;
  if (known) return has(m, "datatype") ? { ...known, datatype: m.datatype } : known;
  // A metric that names itself and its datatype needs no birth.
  if (m.name && has(m, "datatype")) return { name: m.name, datatype: m.datatype, unit: null };
  return undefined;
}

/** The `engUnit` property of a metric, when it has one that fits a unit. */
function engUnit(m: SparkplugMetric): string | null {
  const keys = m.properties?.keys ?? [];
  const i = keys.indexOf("engUnit");
  const unit = i < 0 ? undefined : m.properties?.values?.[i]?.stringValue;
  return unit && unit.length <= MAX_UNIT_LENGTH ? unit : null;
}

/** The metric's value as a finite number, or undefined when it is not a reading (other datatype, null, NaN). */
function numericValue(m: SparkplugMetric, datatype: number | undefined): number | undefined {
  if (m.isNull) return undefined;
  const int = has(m, "intValue") ? (m.intValue ?? 0) : undefined;
  const long = has(m, "longValue") && m.longValue !== undefined ? m.longValue : undefined;
  let v: number | undefined;
  switch (datatype) {
    case DataType.Int8:
      v = int === undefined ? undefined : (int << 24) >> 24;
      break;
    case DataType.Int16:
      v = int === undefined ? undefined : (int << 16) >> 16;
      break;
    case DataType.Int32:
      v = int === undefined ? undefined : int | 0;
      break;
    case DataType.UInt8:
    case DataType.UInt16:
    case DataType.UInt32:
      // Tahu writes UInt32 in long_value, the specification's table in int_value: either is read.
      v = int !== undefined ? int >>> 0 : long !== undefined ? u64(long) : undefined;
      break;
    case DataType.Int64:
      v = long === undefined ? undefined : i64(long);
      break;
    case DataType.UInt64:
      v = long === undefined ? undefined : u64(long);
      break;
    case DataType.Float:
      v = has(m, "floatValue") ? m.floatValue : undefined;
      break;
    case DataType.Double:
      v = has(m, "doubleValue") ? m.doubleValue : undefined;
      break;
    case DataType.Boolean:
      v = has(m, "booleanValue") ? (m.booleanValue ? 1 : 0) : undefined;
      break;
  }
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}
