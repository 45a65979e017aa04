import { hostname } from "node:os";
import { ID_PATTERN, ID_RULE, idFrom, MAX_ID_LENGTH } from "../schemas/rules.js";
import { parsers, setting } from "./config.js";

/** Ids in topics and in GATEWAY_ID; defined with the contract's other reading rules in `schemas/rules.ts`. */
export { ID_PATTERN };

const idParser = parsers.string({ max: MAX_ID_LENGTH, pattern: ID_PATTERN, what: ID_RULE });

/** Settings several commands share, so flag, variable, default and wording agree everywhere. */
export const common = {
  mqttUrl: setting({
    flag: "mqtt-url",
    env: "MQTT_URL",
    default: "mqtt://localhost:1883",
    description: "MQTT broker the sensors publish to.",
    parse: parsers.url("mqtt:", "tcp:"),
  }),
  amqpUrl: setting({
    flag: "amqp-url",
    env: "AMQP_URL",
    default: "amqp://guest:guest@localhost:5672",
    description: "RabbitMQ broker.",
    parse: parsers.url("amqp:"),
  }),
  queue: setting({
    flag: "queue",
    env: "QUEUE",
    default: "telemetry.readings",
    description: "Durable queue of readings; also names <QUEUE>.rejected and <QUEUE>.dead.",
    parse: parsers.string({ max: 200, pattern: /^[A-Za-z0-9._:-]+$/, what: "letters, digits, . _ - :" }),
  }),
  queueType: setting({
    flag: "queue-type",
    env: "QUEUE_TYPE",
    default: "quorum" as "quorum" | "classic",
    description:
      "Type of the queues when this service declares them: quorum (replicated, faster with confirms) or classic. Must match an existing queue.",
    parse: parsers.oneOf("quorum", "classic"),
  }),
  topicPrefix: setting({
    flag: "topic-prefix",
    env: "TOPIC_PREFIX",
    default: "sensors",
    description: "Readings are published on <TOPIC_PREFIX>/<deviceId>/<sensor>.",
    parse: parsers.string({ max: 200, pattern: /^[^#+\0]+$/, what: "a topic level without + or #" }),
  }),
  gatewayId: setting({
    flag: "gateway-id",
    env: "GATEWAY_ID",
    default: () => idFrom(hostname()) || "gateway",
    defaultLabel: "host name",
    description:
      "Names the gateway's persistent MQTT session and is stored with each reading. Keep it stable.",
    parse: idParser,
  }),
  dbPath: setting({
    flag: "db",
    env: "DB_PATH",
    default: "./data/telemetry.db",
    description: "SQLite database file.",
    parse: parsers.string(),
  }),
  databaseUrl: setting({
    flag: "database-url",
    env: "DATABASE_URL",
    default: undefined as string | undefined,
    defaultLabel: "unset: the SQLite file",
    description:
      "postgres://user:password@host:5432/db selects the PostgreSQL store instead of SQLite (--db is then unused).",
    parse: parsers.url("postgres:", "postgresql:"),
    // A password in the URL prints as ***.
    secret: "url",
  }),
  logLevel: setting({
    flag: "log-level",
    env: "LOG_LEVEL",
    default: "info" as "debug" | "info" | "warn" | "error",
    description: "Least severe log level written (JSON lines on stdout).",
    parse: parsers.oneOf("debug", "info", "warn", "error"),
  }),
} as const;

export const httpPort = (port: number) =>
  setting({
    flag: "http-port",
    env: "HTTP_PORT",
    default: port,
    description: "Port of /healthz, /readyz and /metrics on 127.0.0.1 (0 picks a free port).",
    parse: parsers.int(0, 65_535),
  });

export const httpHost = setting({
  flag: "http-host",
  env: "HTTP_HOST",
  default: "127.0.0.1",
  description: "Address the health and metrics endpoint listens on (0.0.0.0 in a container).",
  parse: parsers.string(),
});

export const stallTimeout = setting({
  flag: "stall-timeout",
  env: "STALL_TIMEOUT",
  default: 30_000,
  description:
    "Work waiting with no progress (nothing confirmed, nothing committed) for this long makes /readyz report 503.",
  parse: parsers.duration(1_000, 3_600_000),
});
