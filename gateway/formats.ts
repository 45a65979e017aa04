import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Logger } from "../common/log.js";
import { RateLimitedLog } from "../common/rate-limited-log.js";
import type { MqttMessage } from "../mqtt/input.js";
import type { Envelope } from "./encode.js";
import type { GatewayMetrics } from "./metrics.js";
import { parseSenml, SENML_SENSOR } from "./senml.js";
import { SparkplugDecoder } from "./sparkplug.js";
import { encodeRebirthRequest } from "./sparkplug-payload.js";
import { parsePayload, parseTopic, payloadSizeProblem } from "./validate.js";

export interface FormatOptions {
  readonly topicPrefix: string;
  readonly gatewayId: string;
  /** Sparkplug B is read only when some groups are configured. */
  readonly sparkplug: boolean;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  /**
   * Where the Sparkplug alias maps are kept across restarts (beside the spool); unset: in memory only, rebuilt by
   * rebirth requests after a restart.
   */
  readonly aliasFile?: string | undefined;
  /** Publishes at QoS 0 on the gateway's MQTT session; false when it is not connected. */
  readonly publish: (topic: string, payload: Buffer) => boolean;
}

/**
 * The gateway's validate step for every format it reads: Sparkplug B on `spBv1.0/...`, SenML JSON on
 * `<TOPIC_PREFIX>/<deviceId>/senml`, our JSON on every other `<TOPIC_PREFIX>/<deviceId>/<sensor>`. Each MQTT message
 * becomes an envelope (its readings, possibly none, or its payload refused with the reason); metrics that are not
 * readings are counted, and Sparkplug rebirth requests are published on the way (see docs/contract.md).
 */
export function validator(opts: FormatOptions): {
  validate: (msg: MqttMessage) => Envelope;
  /** At stop: logs how many refusals the rate limit kept out of the log, and saves the alias maps. */
  flush: () => void;
} {
  const { topicPrefix, gatewayId, metrics: m, log } = opts;
  const rejectLog = new RateLimitedLog(log, "rejected invalid input");
  const aliases = opts.sparkplug && opts.aliasFile ? new AliasFile(opts.aliasFile, log) : undefined;
  const sparkplug = opts.sparkplug ? new SparkplugDecoder(gatewayId, () => aliases?.changed()) : undefined;
  if (sparkplug && aliases) aliases.attach(sparkplug);

  const refuse = (msg: MqttMessage, reason: string): Envelope => {
    rejectLog.warn({ topic: msg.topic, reason, bytes: msg.payload.length });
    return { kind: "rejected", ...msg, reason };
  };

  const fromSparkplug = (decoder: SparkplugDecoder, msg: MqttMessage): Envelope => {
    const tooLarge = payloadSizeProblem(msg.payload);
    if (tooLarge) return refuse(msg, tooLarge);
    const r = decoder.decode(msg.topic, msg.payload, msg.receivedAt);
    if (r.seqGap) m.sparkplugSeqGaps.inc();
    if (r.notStored > 0) m.notStored.inc({ format: "sparkplug" }, r.notStored);
    if (r.rebirthTopic !== undefined) {
      const sent = opts.publish(r.rebirthTopic, encodeRebirthRequest(Date.now()));
      if (sent) m.sparkplugRebirths.inc();
      log.info({ topic: r.rebirthTopic, sent, why: r.reason ?? "seq gap" }, "Sparkplug rebirth requested");
    }
    return r.reason === undefined ? { kind: "readings", readings: r.readings } : refuse(msg, r.reason);
  };

  const validate = (msg: MqttMessage): Envelope => {
    if (sparkplug && SparkplugDecoder.owns(msg.topic)) return fromSparkplug(sparkplug, msg);
    const where = parseTopic(msg.topic, topicPrefix);
    if (!("reason" in where) && where.sensor === SENML_SENSOR) {
      const r = parseSenml(where.deviceId, msg.payload, { gatewayId, receivedAt: msg.receivedAt });
      if (!r.ok) return refuse(msg, r.reason);
      if (r.notStored > 0) m.notStored.inc({ format: "senml" }, r.notStored);
      return { kind: "readings", readings: r.readings };
    }
    const parsed = parsePayload(msg.topic, msg.payload, {
      topicPrefix,
      gatewayId,
      receivedAt: msg.receivedAt,
    });
    return parsed.ok ? { kind: "readings", readings: parsed.readings } : refuse(msg, parsed.reason);
  };
  return {
    validate,
    flush: () => {
      rejectLog.flush();
      aliases?.save();
    },
  };
}

/** Births are rare but may come in bursts (every node at once after a broker restart): one write a second at most. */
const SAVE_DELAY_MS = 1_000;

/**
 * The alias maps on disk: loaded at start, saved (write to a temporary file, then rename) a second after births
 * change them and at stop. A cache, never a source of truth: a missing, damaged or stale file costs rebirth requests.
 */
class AliasFile {
  private decoder: SparkplugDecoder | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  attach(decoder: SparkplugDecoder): void {
    this.decoder = decoder;
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      return; // none yet
    }
    try {
      decoder.restore(JSON.parse(text));
      this.log.info({ path: this.path }, "Sparkplug alias maps restored");
    } catch (err) {
      this.log.warn(
        { path: this.path, err: (err as Error).message },
        "Sparkplug alias maps unreadable; rebirths rebuild them",
      );
    }
  }

  changed(): void {
    this.timer ??= setTimeout(() => this.save(), SAVE_DELAY_MS).unref();
  }

  save(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.decoder) return;
    try {
      writeFileSync(`${this.path}.tmp`, JSON.stringify(this.decoder.snapshot()));
      renameSync(`${this.path}.tmp`, this.path);
    } catch (err) {
      this.log.warn({ path: this.path, err: (err as Error).message }, "Sparkplug alias maps not saved");
    }
  }
}
