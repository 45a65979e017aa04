import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { parsers } from "../../common/config.js";
import { simulateCommand } from "../../simulators/index.js";
import { type ComposeService, cleanCli, composeConfig, ports, ROOT, volumes } from "../helpers/compose.js";
import { makeComposeSecrets, withSecrets as mapSecrets, secretPath } from "../helpers/compose-secrets.js";

const DEPLOY = `${ROOT}deploy/`;
const duration = parsers.duration(0, 86_400_000);
/** The services `telemetry check` knows (and so whose whole configuration it can read). */
const CHECKED = ["gateway", "processor", "serve"];

/** The secrets deploy/make-secrets.sh writes, made once for these tests, as a user does before the first start. */
const SECRETS = makeComposeSecrets();

/** The effective settings `telemetry check <service>` prints for a configuration: variable -> value. */
function effective(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of stdout.matchAll(/^ {2}([A-Z_]+)\s+(.*)$/gm)) out[m[1] as string] = m[2] as string;
  return out;
}

describe("docker-compose.yml agrees with the code", () => {
  const compose = composeConfig("docker-compose.yml");
  const ours = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
  const withSecrets = (svc: ComposeService) => mapSecrets(svc, compose.secrets, SECRETS);

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
    const env = withSecrets(svc);
    // Every variable is one of the command's (its --help lists each as [NAME]).
    const help = cleanCli([command, "--help"]);
    expect(help.code).toBe(0);
    const known = new Set([...help.stdout.matchAll(/\[([A-Z_]+)\]/g)].map((m) => m[1] as string));
    for (const variable of Object.keys(env)) {
      expect(
        known.has(variable.replace(/_FILE$/, "")),
        `${name}: ${variable} is not a ${command} variable`,
      ).toBe(true);
    }
    // The whole configuration is valid, as the service in the container would read it.
    const check = cleanCli(["check", command, ...(svc.command ?? []).slice(1)], env);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    // Closed by default: no anonymous MQTT, no guest; serve's only warning is the missing TLS (a proxy's job, or
    // SERVE_TLS_* secrets).
    const warnings = check.stdout.split("\n").filter((l) => l.includes(": warning: "));
    expect(warnings, check.stdout).toEqual(command === "serve" ? [expect.stringMatching(/without TLS/)] : []);
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
    const v = simulateCommand.validate?.((svc.command ?? []).slice(1), withSecrets(svc));
    expect(v?.problems).toEqual([]);
    const gateway = ours.find(([, s]) => s.command?.[0] === "gateway")?.[1] as ComposeService;
    expect(svc.environment?.MQTT_URL).toBe(gateway.environment?.MQTT_URL);
  });

  it("the gateway and processor reach the brokers by their Compose names and ports, the processor and dashboard share the data volume", () => {
    const s = compose.services;
    for (const name of ["gateway", "processor"]) {
      const url = new URL(
        readFileSync(withSecrets(s[name] as ComposeService).AMQP_URL_FILE ?? "", "utf8").trim(),
      );
      expect(url.hostname).toBe("rabbitmq");
      expect((s.rabbitmq?.expose ?? []).map(Number)).toContain(Number(url.port));
    }
    const mqttUrl = new URL(s.gateway?.environment?.MQTT_URL ?? "");
    expect(mqttUrl.hostname).toBe("mosquitto");
    expect(ports(s.mosquitto as ComposeService).map((p) => p.target)).toContain(Number(mqttUrl.port));
    const dataOf = (name: string) => volumes(s[name]).find((v) => v.target === "/data")?.source;
    expect(dataOf("processor")).toBe("data");
    expect(dataOf("dashboard")).toBe("data");
    expect(s.processor?.environment?.DB_PATH).toBe(s.dashboard?.environment?.DB_PATH);
  });

  it("is not open by default: RabbitMQ's own user, Mosquitto with passwords, the dashboard's token, secrets as files", () => {
    const s = compose.services;
    // Every secret a variable names is one the service mounts, from a file make-secrets.sh writes.
    for (const [name, svc] of Object.entries(s)) {
      const mounted = new Set((svc.secrets ?? []).map(secretPath));
      for (const [k, v] of Object.entries(svc.environment ?? {})) {
        if (k.endsWith("_FILE")) expect(mounted, `${name}: ${k}`).toContain(v);
        // No credentials in the file itself: no guest, no password in a URL.
        else expect(v, `${name}: ${k}`).not.toMatch(/guest|\/\/[^/@]*:[^/@]*@/i);
      }
    }
    for (const { file } of Object.values(compose.secrets ?? {}))
      expect(readFileSync(join(SECRETS, basename(file)), "utf8").trim()).not.toBe("");
    // RabbitMQ makes the user of amqp_url instead of guest, and is not published.
    const rabbitConf = (s.rabbitmq?.secrets ?? []).map(secretPath);
    expect(rabbitConf).toEqual([expect.stringMatching(/^\/etc\/rabbitmq\/conf\.d\/.+\.conf$/)]);
    const amqp = new URL(readFileSync(join(SECRETS, "amqp_url"), "utf8").trim());
    expect(amqp.username).not.toBe("guest");
    expect(readFileSync(join(SECRETS, "rabbitmq.conf"), "utf8")).toContain(`default_user = ${amqp.username}`);
    expect(s.rabbitmq?.ports ?? []).toEqual([]);
    // Mosquitto: passwords on the published listener, anonymous only on the container's loopback (healthcheck).
    const mosquitto = readFileSync(`${DEPLOY}mosquitto.conf`, "utf8");
    expect(mosquitto).toMatch(/^per_listener_settings true$/m);
    expect(mosquitto).toMatch(
      /^listener 1883 0\.0\.0\.0\nallow_anonymous false\npassword_file \/run\/secrets\/mosquitto_passwd$/m,
    );
    expect(mosquitto).toMatch(/^listener 1884 127\.0\.0\.1\nallow_anonymous true$/m);
    for (const user of ["gateway", "simulator"])
      expect(readFileSync(join(SECRETS, "mosquitto_passwd"), "utf8")).toMatch(new RegExp(`^${user}:`, "m"));
    // Published: MQTT and the dashboard for users; metrics only on the host's loopback.
    for (const name of ["gateway", "processor"])
      expect(
        (s[name]?.ports ?? []).map((p) => (typeof p === "string" ? p : (p as { host_ip?: string }).host_ip)),
      ).toEqual([expect.stringMatching(/^127\.0\.0\.1/)]);
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
      const known = cleanCli([command, "--help"]).stdout;
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
