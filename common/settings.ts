import { hostname } from "node:os";
import { type ConfigOf, parsers, type Setting, setting } from "./config.js";
import { ID_PATTERN, ID_RULE, idFrom, MAX_ID_LENGTH } from "./ids.js";
import { type BrokerKind, parsePemFile, type TlsFiles, tlsMismatch } from "./tls.js";

/** Parses a device, sensor or gateway id setting or parameter by the id rule of `ids.ts`. */
export const idParser = parsers.string({ max: MAX_ID_LENGTH, pattern: ID_PATTERN, what: ID_RULE });

/** Settings several commands share, so flag, variable, default and wording agree everywhere. */
export const common = {
  mqttUrl: setting({
    flag: "mqtt-url",
    env: "MQTT_URL",
    default: "mqtt://localhost:1883",
    description: "MQTT broker the sensors publish to; mqtts:// for TLS (port 8883 when absent).",
    parse: parsers.url("mqtt:", "tcp:", "mqtts:"),
  }),
  amqpUrl: setting({
    flag: "amqp-url",
    env: "AMQP_URL",
    default: "amqp://guest:guest@localhost:5672",
    description:
      "RabbitMQ broker; amqps:// for TLS (port 5671 when absent). Several nodes of one cluster as full URLs separated by commas: a service connects to one that answers, starting from a random one, and moves to the next when its node goes away.",
    parse: parsers.urlList("amqp:", "amqps:"),
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

/** The TLS files a group can hold: the authorities to trust, a certificate and its private key. */
type TlsFileKind = "ca" | "cert" | "key";
const FILE_WORD = { ca: "Ca", cert: "Cert", key: "Key" } as const;

/** The settings {@link tlsFileSettings} makes: `<prefix>CaFile`, `<prefix>CertFile`, `<prefix>KeyFile`, as asked. */
export type TlsFileSettings<P extends string, K extends TlsFileKind> = {
  readonly [F in K as `${P}${(typeof FILE_WORD)[F]}File`]: Setting<string | undefined>;
};

/**
 * A group of PEM file settings for one TLS endpoint, named from a camel-case prefix: `tlsFileSettings("mqtt", ...)`
 * makes `mqttCaFile` (`--mqtt-ca-file`, `MQTT_CA_FILE`), `mqttCertFile` and `mqttKeyFile`; `"serveTls"` makes
 * `serveTlsCertFile` (`SERVE_TLS_CERT_FILE`) and so on. Only the kinds given a description are made. Each is unset
 * by default and checked readable and PEM when parsed; the service reads the files at start (`readTls`).
 */
export function tlsFileSettings<P extends string, K extends TlsFileKind>(
  prefix: P,
  descriptions: Readonly<Record<K, string>>,
): TlsFileSettings<P, K> {
  const words = prefix.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const group: Record<string, Setting<string | undefined>> = {};
  for (const kind of Object.keys(descriptions) as K[]) {
    const flag = `${words}-${kind}-file`;
    group[`${prefix}${FILE_WORD[kind]}File`] = setting<string | undefined>({
      flag,
      env: flag.toUpperCase().replaceAll("-", "_"),
      default: undefined,
      defaultLabel: "unset",
      description: descriptions[kind],
      parse: parsePemFile,
    });
  }
  return group as TlsFileSettings<P, K>;
}

/** The three files of a broker's group, as a parsed configuration holds them. */
function brokerFiles(kind: BrokerKind, c: SecurityConfig): TlsFiles {
  return kind === "MQTT"
    ? { caFile: c.mqttCaFile, certFile: c.mqttCertFile, keyFile: c.mqttKeyFile }
    : { caFile: c.amqpCaFile, certFile: c.amqpCertFile, keyFile: c.amqpKeyFile };
}

/** The client TLS files of a broker, worded for `kind` (MQTT_CA_FILE, ...). */
const brokerTls = (kind: BrokerKind, broker: string, prefix: "mqtt" | "amqp") =>
  tlsFileSettings(prefix, {
    ca: `PEM certificates of the authorities trusted to sign ${broker}'s certificate (${prefix}s://; unset: the system's).`,
    cert: `PEM client certificate presented to ${broker} (mutual TLS), with ${kind}_KEY_FILE.`,
    key: `PEM private key of ${kind}_CERT_FILE.`,
  });

/**
 * The MQTT broker's TLS files and credentials (gateway and simulate), next to `common.mqttUrl`: spread them into a
 * command's spec. The TLS files need an `mqtts://` URL; MQTT_USERNAME and MQTT_PASSWORD override the URL's.
 */
export const mqttSecurity = {
  ...brokerTls("MQTT", "the MQTT broker", "mqtt"),
  mqttUsername: setting<string | undefined>({
    flag: "mqtt-username",
    env: "MQTT_USERNAME",
    default: undefined,
    defaultLabel: "the user name of MQTT_URL, if any",
    description: "User name sent to the MQTT broker.",
    parse: parsers.string({ max: 65_535 }),
  }),
  mqttPassword: setting<string | undefined>({
    flag: "mqtt-password",
    env: "MQTT_PASSWORD",
    default: undefined,
    defaultLabel: "the password of MQTT_URL, if any",
    description:
      "Password sent to the MQTT broker (printed as ***; MQTT_PASSWORD_FILE keeps it out of the environment).",
    parse: parsers.string({ max: 65_535 }),
  }),
} as const;

/**
 * RabbitMQ's TLS files (gateway and processor), next to `common.amqpUrl`: spread them into a command's spec. They
 * need an `amqps://` URL; the password is AMQP_URL's (AMQP_URL_FILE keeps it out of the environment).
 */
export const amqpSecurity = brokerTls("AMQP", "RabbitMQ", "amqp");

/** The MQTT broker's TLS files and credentials as a service's configuration holds them, each optional. */
export type MqttSecurityConfig = Partial<ConfigOf<typeof mqttSecurity>>;
/** RabbitMQ's TLS files as a service's configuration holds them, each optional. */
export type AmqpSecurityConfig = Partial<ConfigOf<typeof amqpSecurity>>;

/** The broker settings of a parsed configuration that has both groups or either. */
type SecurityConfig = MqttSecurityConfig &
  AmqpSecurityConfig & { readonly mqttUrl?: string; readonly amqpUrl?: string };

/**
 * A certificate set without its key or the reverse, for the group whose variables start with `env` (`MQTT`,
 * `SERVE_TLS`) and whose certificate is a `role` one: one line, or undefined when both or neither are set.
 */
export function certKeyProblem(env: string, files: TlsFiles, role: "client" | "server"): string | undefined {
  if ((files.certFile === undefined) === (files.keyFile === undefined)) return undefined;
  return `${env}_CERT_FILE and ${env}_KEY_FILE go together: set both for a ${role} certificate, or neither`;
}

/**
 * A command's `check` across the broker security settings: TLS files with a plain URL (they would go unused and
 * the connection unencrypted), or a client certificate without its key or the reverse. One line, or undefined.
 */
export function securityProblem(c: SecurityConfig): string | undefined {
  for (const kind of ["MQTT", "AMQP"] as const) {
    const files = brokerFiles(kind, c);
    const url = kind === "MQTT" ? c.mqttUrl : c.amqpUrl;
    const problem =
      certKeyProblem(kind, files, "client") ??
      (url === undefined ? undefined : tlsMismatch(kind, url, files));
    if (problem) return problem;
  }
  return undefined;
}

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

/** `--format` of an operator's report (`status`, `replay`): a table on a terminal, JSON when piped. */
export const reportFormat = setting({
  flag: "format",
  default: (process.stdout.isTTY ? "table" : "json") as "table" | "json",
  defaultLabel: "table on a terminal, else json",
  description: "table or json.",
  parse: parsers.oneOf("table", "json"),
});
