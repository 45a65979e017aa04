import { parsers, setting } from "../common/config.js";
import type { FullPolicy } from "./store.js";

const MIN_SPOOL_BYTES = 1_048_576;
const MAX_SPOOL_BYTES = 17_592_186_044_416; // 16 TiB
const DEFAULT_SPOOL_BYTES = 1_073_741_824;

/** `1GiB`, `500MiB`, `64k`, or plain bytes; printed back as MiB or GiB. */
export const parseBytes = parsers.bytes(MIN_SPOOL_BYTES, MAX_SPOOL_BYTES);

/** The gateway's spool settings (docs/contract.md, "Edge spool"): spread them into the gateway's spec. */
export const spoolSettings = {
  spoolPath: setting<string | undefined>({
    flag: "spool-path",
    env: "SPOOL_PATH",
    default: undefined,
    defaultLabel: "unset (no spool)",
    description:
      "Directory of the store-and-forward spool. Set: a reading is PUBACKed once durable in the spool and removed only after RabbitMQ confirmed it, so the gateway keeps taking readings while RabbitMQ is unreachable.",
    parse: parsers.string({ min: 1, max: 4_096 }),
  }),
  spoolMaxBytes: setting({
    flag: "spool-max-bytes",
    env: "SPOOL_MAX_BYTES",
    default: DEFAULT_SPOOL_BYTES,
    description: "Disk the spool may take at most (hours x readings/s x bytes per reading; see README).",
    parse: parseBytes,
  }),
  spoolMaxAgeMs: setting({
    flag: "spool-max-age",
    env: "SPOOL_MAX_AGE",
    default: 7 * 86_400_000,
    description: "Readings spooled longer than this are dropped (counted and logged), a segment at a time.",
    parse: parsers.duration(60_000, 366 * 86_400_000),
  }),
  spoolFull: setting<FullPolicy>({
    flag: "spool-full",
    env: "SPOOL_FULL",
    default: "block",
    description:
      "When the spool is full: block (stop PUBACKing; the MQTT broker keeps the readings), drop-oldest or drop-newest (each drop counted and logged).",
    parse: parsers.oneOf("block", "drop-oldest", "drop-newest"),
  }),
};
