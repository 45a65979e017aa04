import type { MqttClient } from "mqtt";
import type { Logger } from "../common/log.js";
import {
  DataType,
  decodeSparkplug,
  encodeSparkplug,
  type SparkplugMetricOut,
} from "../gateway/sparkplug-payload.js";
import type { SimMessage } from "./model.js";
import type { SimReading } from "./sensors.js";
import { sensorModel } from "./sensors.js";

/** How simulated devices publish: our JSON, SenML JSON (RFC 8428), or Sparkplug B. */
export type SimFormat = "json" | "senml" | "sparkplug";
export const SIM_FORMATS: readonly SimFormat[] = ["json", "senml", "sparkplug"];
/** Unit names Sparkplug's engUnit property carries, like any other string property. */
const ENG_UNIT = "engUnit";
const STRING_TYPE = 12;
const SEQ_MODULO = 256;

/** One simulated edge node's Sparkplug state: the aliases of its birth and its `seq`. */
interface EdgeNode {
  readonly aliases: Map<string, number>;
  seq: number;
  born: boolean;
}

/**
 * Rewrites the model's JSON messages into another format, the readings unchanged. SenML: the message's readings as
 * one pack on `<prefix>/<deviceId>/senml` (base name the sensor, base time the first reading's, base unit).
 * Sparkplug B: each simulated device is an edge node of `group` whose node metrics are its sensors; its first
 * message (and the first after a rebirth request) is preceded by an NBIRTH naming every sensor with an alias and
 * engUnit, data then goes by alias with a `seq` per node. Malformed messages stay as the model made them.
 */
export class FormatShaper {
  private readonly nodes = new Map<string, EdgeNode>();

  constructor(
    private readonly format: SimFormat,
    private readonly topicPrefix: string,
    private readonly group: string,
    private readonly sensors: readonly string[],
  ) {}

  /**
   * The shaper for a simulation's settings, on its client. With Sparkplug it subscribes to its group's NCMD topics:
   * an edge node answers a rebirth request with its births, sent before the node's next data.
   */
  static attach(
    client: MqttClient,
    config: {
      readonly format?: SimFormat | undefined;
      readonly topicPrefix: string;
      readonly sparkplugGroup?: string | undefined;
      readonly sensors: readonly string[];
    },
    log: Logger,
  ): FormatShaper {
    const group = config.sparkplugGroup ?? "telemetry-sim";
    const shaper = new FormatShaper(config.format ?? "json", config.topicPrefix, group, config.sensors);
    if (config.format === "sparkplug") {
      client.on("message", (topic, payload) => {
        if (shaper.command(topic, payload)) log.info({ topic }, "rebirth requested");
      });
      client.subscribe(`spBv1.0/${group}/NCMD/+`, { qos: 0 });
    }
    return shaper;
  }

  /** A rebirth request on a node's NCMD topic: its next message is preceded by an NBIRTH. True when it was one. */
  command(topic: string, payload: Buffer): boolean {
    const node = this.nodes.get(topic.split("/")[3] ?? "");
    let decoded: ReturnType<typeof decodeSparkplug>;
    try {
      decoded = decodeSparkplug(payload);
    } catch {
      return false;
    }
    const rebirth = decoded.metrics.some((m) => m.name === "Node Control/Rebirth" && m.booleanValue === true);
    if (rebirth && node) node.born = false;
    return rebirth;
  }

  /** The messages to publish for one model message: itself, reshaped, and a birth first where one is due. */
  shape(message: SimMessage): SimMessage[] {
    const first = message.readings[0];
    if (this.format === "json" || message.kind === "malformed" || !first) return [message];
    if (this.format === "senml") return [{ ...message, ...this.senml(message.readings, first) }];
    return this.sparkplug(message, first);
  }

  private senml(readings: readonly SimReading[], first: SimReading): Pick<SimMessage, "topic" | "payload"> {
    const bt = first.ts / 1_000;
    const pack = readings.map((r, i) => ({
      ...(i === 0 ? { bn: r.sensor, bt, ...(r.unit === null ? {} : { bu: r.unit }) } : {}),
      ...(i === 0 ? {} : { t: (r.ts - first.ts) / 1_000 }),
      v: r.value,
    }));
    return {
      topic: `${this.topicPrefix}/${first.deviceId}/senml`,
      payload: Buffer.from(JSON.stringify(pack)),
    };
  }

  private sparkplug(message: SimMessage, first: SimReading): SimMessage[] {
    const id = first.deviceId;
    let node = this.nodes.get(id);
    if (!node) {
      node = { aliases: new Map(this.sensors.map((s, i) => [s, i + 1])), seq: 0, born: false };
      this.nodes.set(id, node);
    }
    const out: SimMessage[] = [];
    if (!node.born) {
      node.born = true;
      node.seq = 0;
      const metrics: SparkplugMetricOut[] = this.sensors.map((name) => {
        const unit = sensorModel(name).unit;
        return {
          name,
          alias: node.aliases.get(name) ?? 0,
          datatype: DataType.Double,
          isNull: true,
          ...(unit === null
            ? {}
            : { properties: { keys: [ENG_UNIT], values: [{ type: STRING_TYPE, stringValue: unit }] } }),
        };
      });
      const payload = encodeSparkplug({ timestamp: first.ts, seq: this.nextSeq(node), metrics });
      out.push({ topic: `spBv1.0/${this.group}/NBIRTH/${id}`, payload, kind: "reading", readings: [] });
    }
    const metrics = message.readings.map((r) => ({
      alias: node.aliases.get(r.sensor) ?? 0,
      timestamp: r.ts,
      datatype: DataType.Double,
      doubleValue: r.value,
    }));
    const payload = encodeSparkplug({ timestamp: first.ts, seq: this.nextSeq(node), metrics });
    out.push({ ...message, topic: `spBv1.0/${this.group}/NDATA/${id}`, payload });
    return out;
  }

  private nextSeq(node: EdgeNode): number {
    const seq = node.seq;
    node.seq = (seq + 1) % SEQ_MODULO;
    return seq;
  }
}
