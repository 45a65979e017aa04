import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parsers } from "../../common/config.js";
import { CLI } from "../../scripts/spawn.js";
import { simulateCommand } from "../../simulators/index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEPLOY = `${ROOT}deploy/`;
const duration = parsers.duration(0, 86_400_000);
/** The services `telemetry check` knows (and so whose whole configuration it can read). */
const CHECKED = ["gateway", "processor", "serve"];

interface ComposeService {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: { target: number; published: string | number }[] | string[];
  healthcheck?: { test: string[] };
  restart?: string;
  stop_grace_period?: string;
  stop_signal?: string;
  volumes?: ({ source?: string; target: string } | string)[];
}

/** Compose v1 writes a volume as "source:target:mode", the Compose specification as {source, target}. */
function volumes(s: ComposeService | undefined): { source?: string; target: string }[] {
  return (s?.volumes ?? []).map((v) => {
    if (typeof v !== "string") return v;
    const [source, target = ""] = v.split(":");
    return source === undefined ? { target } : { source, target };
  });
}

/** The file as Docker Compose reads it (`docker-compose config`, Debian's package), as JSON. */
function composeConfig(): { services: Record<string, ComposeService> } {
  const yaml = execFileSync("docker-compose", ["-f", `${ROOT}docker-compose.yml`, "config"], {
    encoding: "utf8",
  });
  const json = execFileSync(
    "python3",
    ["-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    { input: yaml, encoding: "utf8" },
  );
  return JSON.parse(json);
}

/** Runs the built CLI with exactly `env` (no variables of the test's own) and returns its output. */
function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    encoding: "utf8",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `docker-compose config` writes "9464:9464" as {target, published}. */
function ports(s: ComposeService): { target: number; published: number }[] {
  return (s.ports ?? []).map((p) =>
    typeof p === "string"
      ? { target: Number(p.split(":")[1]), published: Number(p.split(":")[0]) }
      : { target: Number(p.target), published: Number(p.published) },
  );
}

/** The effective settings `telemetry check <service>` prints for a configuration: variable -> value. */
function effective(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of stdout.matchAll(/^ {2}([A-Z_]+)\s+(.*)$/gm)) out[m[1] as string] = m[2] as string;
  return out;
}

describe("docker-compose.yml agrees with the code", () => {
  const compose = composeConfig();
  const ours = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

  it("runs RabbitMQ, Mosquitto with deploy/mosquitto.conf, gateway, processor, simulator and the dashboard", () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ["dashboard", "gateway", "mosquitto", "processor", "rabbitmq", "simulator"].sort(),
    );
    const mosquitto = compose.services.mosquitto;
    expect(volumes(mosquitto).some((v) => v.source?.endsWith("deploy/mosquitto.conf"))).toBe(true);
    expect(ours.map(([, s]) => s.command?.[0]).sort()).toEqual(["gateway", "processor", "serve", "simulate"]);
  });

  it.each(CHECKED)("the %s's command, variables and ports are ones the code knows and uses", (command) => {
    const [name, s] = ours.find(([, svc]) => svc.command?.[0] === command) ?? [];
    expect(name, `no service runs telemetry ${command}`).toBeDefined();
    const svc = s as ComposeService;
    const env = svc.environment ?? {};
    // Every variable is one of the command's (its --help lists each as [NAME]).
    const help = cli([command, "--help"]);
    expect(help.code).toBe(0);
    const known = new Set([...help.stdout.matchAll(/\[([A-Z_]+)\]/g)].map((m) => m[1] as string));
    for (const variable of Object.keys(env)) {
      expect(
        known.has(variable.replace(/_FILE$/, "")),
        `${name}: ${variable} is not a ${command} variable`,
      ).toBe(true);
    }
    // The whole configuration is valid, as the service in the container would read it.
    const check = cli(["check", command, ...(svc.command ?? []).slice(1)], env);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const settings = effective(check.stdout);
    // Published ports and the healthcheck use the port the service listens on, on all interfaces.
    const port = Number(settings.HTTP_PORT ?? settings.SERVE_PORT);
    expect(ports(svc).map((p) => p.target)).toEqual([port]);
    expect(settings.HTTP_HOST).toBe("0.0.0.0");
    const probe = svc.healthcheck?.test.join(" ") ?? "";
    expect(probe).toContain(`http://127.0.0.1:${port}/${command === "serve" ? "healthz" : "readyz"}`);
    // Restarted when it fails, and given longer than its drain to stop with SIGTERM.
    expect(svc.restart).toBe("unless-stopped");
    expect(svc.stop_signal ?? "SIGTERM").toBe("SIGTERM");
    const grace = duration(String(svc.stop_grace_period ?? "10s").replace(/^(\d+)$/, "$1s"));
    if (settings.DRAIN_TIMEOUT) expect(grace).toBeGreaterThan(duration(settings.DRAIN_TIMEOUT));
  });

  it("the simulator's options and variables are the simulator's, and it reaches the MQTT broker the gateway uses", () => {
    const svc = ours.find(([, s]) => s.command?.[0] === "simulate")?.[1] as ComposeService;
    const v = simulateCommand.validate?.((svc.command ?? []).slice(1), svc.environment ?? {});
    expect(v?.problems).toEqual([]);
    const gateway = ours.find(([, s]) => s.command?.[0] === "gateway")?.[1] as ComposeService;
    expect(svc.environment?.MQTT_URL).toBe(gateway.environment?.MQTT_URL);
  });

  it("the gateway and processor reach the brokers by their Compose names and ports, the processor and dashboard share the data volume", () => {
    const s = compose.services;
    const rabbit = ports(s.rabbitmq as ComposeService).map((p) => p.target);
    const mqttPort = ports(s.mosquitto as ComposeService).map((p) => p.target);
    for (const name of ["gateway", "processor"]) {
      const url = new URL(s[name]?.environment?.AMQP_URL ?? "");
      expect(url.hostname).toBe("rabbitmq");
      expect(rabbit).toContain(Number(url.port));
    }
    const mqttUrl = new URL(s.gateway?.environment?.MQTT_URL ?? "");
    expect(mqttUrl.hostname).toBe("mosquitto");
    expect(mqttPort).toContain(Number(mqttUrl.port));
    const dataOf = (name: string) => volumes(s[name]).find((v) => v.target === "/data")?.source;
    expect(dataOf("processor")).toBe("data");
    expect(dataOf("dashboard")).toBe("data");
    expect(s.processor?.environment?.DB_PATH).toBe(s.dashboard?.environment?.DB_PATH);
  });
});

describe("the Dockerfile", () => {
  it("builds in stages and runs as a non-root user the telemetry entry point", () => {
    const text = readFileSync(`${ROOT}Dockerfile`, "utf8");
    expect(text.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^USER (?!root\b)\S+$/m);
    expect(text).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/telemetry\.js"\]$/m);
  });
});

describe("systemd units", () => {
  it.each(["gateway", "processor", "serve"])(
    "telemetry-%s.service verifies, restarts, stops with SIGTERM after more than its drain",
    (command) => {
      const unit = `${DEPLOY}telemetry-${command}.service`;
      const verify = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
      expect(verify.status, verify.stderr).toBe(0);
      expect(verify.stderr).toBe("");
      const text = readFileSync(unit, "utf8");
      expect(text).toMatch(
        new RegExp(`^ExecStart=/usr/bin/node \\S+/dist/cli/telemetry\\.js ${command}$`, "m"),
      );
      expect(text).toMatch(/^Restart=(always|on-failure)$/m);
      expect(text).toMatch(/^KillSignal=SIGTERM$/m);
      const stop = duration(/^TimeoutStopSec=(\S+)$/m.exec(text)?.[1] ?? "");
      const drain = /^Environment=DRAIN_TIMEOUT=(\S+)$/m.exec(text)?.[1] ?? "10s"; // the services' default
      expect(stop).toBeGreaterThan(duration(drain));
      const env = [...text.matchAll(/^Environment=([A-Z_]+)=/gm)].map((m) => m[1] as string);
      const known = cli([command, "--help"]).stdout;
      for (const variable of env) expect(known).toContain(`[${variable.replace(/_FILE$/, "")}]`);
    },
  );
});

describe("Prometheus alert rules", () => {
  it("pass promtool's check and its unit tests, and use only metrics the services export", () => {
    const check = spawnSync("promtool", ["check", "rules", `${DEPLOY}prometheus-alerts.yml`], {
      encoding: "utf8",
    });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/SUCCESS: 10 rules found/);
    const test = spawnSync("promtool", ["test", "rules", "prometheus-alerts.test.yml"], {
      cwd: DEPLOY,
      encoding: "utf8",
    });
    expect(test.status, test.stdout + test.stderr).toBe(0);

    const rules = readFileSync(`${DEPLOY}prometheus-alerts.yml`, "utf8");
    const used = new Set([...rules.matchAll(/\btelemetry_[a-z_]+/g)].map((m) => m[0]));
    expect(used.size).toBeGreaterThan(5);
    const sources = execFileSync(
      "grep",
      ["-rhoE", 'name: "telemetry_[a-z_]+"', "gateway", "processor", "amqp", "mqtt", "common"],
      {
        cwd: ROOT,
        encoding: "utf8",
      },
    );
    const exported = new Set([...sources.matchAll(/telemetry_[a-z_]+/g)].map((m) => m[0]));
    for (const metric of used)
      expect(exported, `${metric} is not a metric the services export`).toContain(metric);
  });
});
