import type { CliCommand, Validation } from "../common/command.js";
import { redactUrl, splitUrlList } from "../common/config.js";
import { describeTlsError, readTls, type TlsMaterial } from "../common/tls.js";
import { probePostgres } from "../store/postgres-status.js";
import { probeSqlite } from "../store/status.js";
import { securityWarnings } from "./check-warnings.js";
import { probeAmqp, probeMqtt, reasonOf } from "./probe.js";

type Env = Readonly<Record<string, string | undefined>>;

/** One thing `--connect` reached, or failed to reach. */
interface Reach {
  readonly what: string;
  readonly ok: boolean;
  readonly detail: string;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** The TLS files of a broker the configuration names (`mqttCaFile`, ... or `amqpCaFile`, ...), read. */
function tlsOf(config: Readonly<Record<string, unknown>>, prefix: "mqtt" | "amqp"): TlsMaterial {
  return readTls({
    caFile: str(config[`${prefix}CaFile`]),
    certFile: str(config[`${prefix}CertFile`]),
    keyFile: str(config[`${prefix}KeyFile`]),
  });
}

/**
 * Reaches what a service's configuration names, by the settings it has: `amqpUrl` (each node of the list, with
 * `amqpCaFile`/`amqpCertFile`/`amqpKeyFile`), `mqttUrl` (with `mqttUsername`/`mqttPassword` and the `mqtt*File`
 * TLS files when it has them), and its store (`databaseUrl`, or the SQLite
 * file at `dbPath`, which the processor must be able to write and readers must find).
 */
async function reach(service: string, config: Readonly<Record<string, unknown>>): Promise<Reach[]> {
  const probes: Promise<Reach>[] = [];
  const attempt = (what: string, run: () => Promise<string>) =>
    probes.push(
      run().then(
        (detail) => ({ what, ok: true, detail }),
        (err: unknown) => ({
          what,
          ok: false,
          detail: describeTlsError(err, what.startsWith("MQTT") ? "MQTT" : "AMQP") ?? reasonOf(err),
        }),
      ),
    );
  const amqpUrl = str(config.amqpUrl);
  if (amqpUrl) {
    for (const url of splitUrlList(amqpUrl)) {
      attempt(`RabbitMQ ${redactUrl(url)}`, async () => {
        await probeAmqp(url, tlsOf(config, "amqp"));
        return "connected";
      });
    }
  }
  const mqttUrl = str(config.mqttUrl);
  if (mqttUrl) {
    const username = str(config.mqttUsername);
    const password = str(config.mqttPassword);
    attempt(`MQTT ${redactUrl(mqttUrl)}`, async () => {
      await probeMqtt(
        mqttUrl,
        {
          ...(username ? { username } : {}),
          ...(password ? { password } : {}),
        },
        tlsOf(config, "mqtt"),
      );
      return "connected";
    });
    if (username || str(config.mqttCertFile)) {
      // Credentials are configured; a broker that lets a client in without them is open all the same.
      attempt(`MQTT ${redactUrl(mqttUrl)} without credentials`, async () => {
        const anonymous = mqttUrl.replace(/\/\/[^@/]*@/, "//");
        const tls = tlsOf(config, "mqtt");
        const accepted = await probeMqtt(anonymous, {}, { ...(tls.ca ? { ca: tls.ca } : {}) }).then(
          () => true,
          () => false,
        );
        return accepted ? "warning: the broker accepts anonymous clients" : "refused, as it should be";
      });
    }
  }
  const databaseUrl = str(config.databaseUrl);
  if (databaseUrl) {
    attempt(`store ${redactUrl(databaseUrl)}`, () =>
      probePostgres(databaseUrl, { write: service === "processor" }),
    );
  } else if (str(config.dbPath)) {
    const path = config.dbPath as string;
    attempt(`store ${path}`, async () => probeSqlite(path, { write: service === "processor" }));
  }
  return Promise.all(probes);
}

function report(name: string, v: Validation, out: string[]): void {
  for (const p of v.problems) out.push(`${name}: ${p}`);
  if (v.problems.length > 0 || !v.effective) return;
  out.push(`${name}: configuration OK`);
  for (const w of securityWarnings(name, v.config ?? {})) out.push(`${name}: warning: ${w}`);
  const width = Math.max(...Object.keys(v.effective).map((k) => k.length));
  for (const [k, value] of Object.entries(v.effective)) out.push(`  ${k.padEnd(width)}  ${value}`);
}

/**
 * `telemetry check [SERVICE] [--connect] [SERVICE's options]`: reads a service's whole configuration the way the
 * service would (flags, variables, `_FILE`, defaults), prints every problem at once, or the effective
 * configuration with secrets masked; `--connect` also reaches its brokers and its store. Exit 0 when everything
 * is good, 1 otherwise. Without SERVICE it checks every one of `services` from the environment alone.
 */
export function checkCommand(services: readonly CliCommand[]): CliCommand {
  const names = services.map((s) => s.name);
  const summary =
    `Validates a service's whole configuration (${names.join(", ")}; all of them when none is named) and ` +
    "reports every problem at once; --connect also reaches its brokers and its store. Exit 0 or 1.";
  return {
    name: "check",
    summary,
    help: () =>
      [
        `Usage: telemetry check [${names.join("|")}] [--connect] [the service's options]`,
        "",
        summary,
        "",
        "Reads flags, environment variables (or <VARIABLE>_FILE) and defaults exactly as the service does, and",
        "prints each problem on its own line, or the effective configuration with secrets shown as ***.",
        "",
        "Options:",
        "  --connect",
        "      Also open a connection to RabbitMQ, a throwaway clean MQTT session, and the store.",
        "  --help",
        "      Show this help and exit.",
        "",
        "Any other option is the named service's (see `telemetry <service> --help`).",
        "",
      ].join("\n"),
    async execute(argv, env: Env) {
      const connect = argv.includes("--connect");
      const rest = argv.filter((a) => a !== "--connect");
      const named = services.find((s) => s.name === rest[0]);
      if (!named && rest.length > 0) {
        const what = rest[0]?.startsWith("-")
          ? `options ${rest.join(" ")} need a service: telemetry check <service> ${rest.join(" ")}`
          : `unknown service ${JSON.stringify(rest[0])}`;
        process.stderr.write(`telemetry check: ${what}; one of ${names.join(", ")} (try --help)\n`);
        return 2;
      }
      const targets = named
        ? [{ service: named, argv: rest.slice(1) }]
        : services.map((service) => ({ service, argv: [] }));
      const out: string[] = [];
      let good = true;
      for (const { service, argv: serviceArgv } of targets) {
        const v = service.validate?.(serviceArgv, env) ?? { problems: [] };
        report(service.name, v, out);
        if (v.problems.length > 0) good = false;
        if (connect && v.config) {
          for (const r of await reach(service.name, v.config)) {
            out.push(`${service.name}: ${r.what}: ${r.ok ? "ok" : "FAILED"}, ${r.detail}`);
            if (!r.ok) good = false;
          }
        }
      }
      process.stdout.write(`${out.join("\n")}\n`);
      return good ? 0 : 1;
    },
  };
}
