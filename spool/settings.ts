import { parsers, setting } from "../common/config.js";
import type { FullPolicy } from "./store.js";

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1_024,
  kib: 1_024,
  m: 1_048_576,
  mib: 1_048_576,
  g: 1_073_741_824,
  gib: 1_073_741_824,
};
const MIN_SPOOL_BYTES = 1_048_576;
const MAX_SPOOL_BYTES = 17_592_186_044_416; // 16 TiB
const DEFAULT_SPOOL_BYTES = 1_073_741_824;

/** `1GiB`, `500MiB`, `64k`, or plain bytes; printed back as MiB or GiB. */
export const parseBytes = Object.assign(
  (raw: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim().replaceAll("_", ""));
    const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) throw new Error("must be a size such as 512MiB, 2GiB or a number of bytes");
    const n = Math.floor(Number(m[1]) * unit);
    if (n < MIN_SPOOL_BYTES || n > MAX_SPOOL_BYTES) throw new Error("must be between 1MiB and 16384GiB");
    return n;
  },
  {
    format: (n: number) =>
      n % 1_073_741_824 === 0
        ? `${n / 1_073_741_824}GiB`
        : n % 1_048_576 === 0
          ? `${n / 1_048_576}MiB`
          : String(n),
  },
);

/** The gateway's spool settings (docs/contract.md, "Contract: edge spool"): spread them into the gateway's spec. */
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
    format: parseBytes.format,
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
