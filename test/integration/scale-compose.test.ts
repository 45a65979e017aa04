import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { splitUrlList } from "../../common/config.js";
import { type ComposeService, cleanCli, composeConfig, ports, ROOT } from "../helpers/compose.js";
import { makeComposeSecrets, withSecrets } from "../helpers/compose-secrets.js";

/** Values for the variables the file requires, as an operator would give them. */
const SECRETS = { RABBITMQ_ERLANG_COOKIE: "test-cookie-7f3a", POSTGRES_PASSWORD: "test-pg-91c2" };
const RABBIT_NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"];
/** The files deploy/make-secrets.sh writes, which the services read as Compose secrets. */
const SECRET_FILES = makeComposeSecrets();

describe("docker-compose.cluster.yml agrees with the code", () => {
  const compose = composeConfig("docker-compose.cluster.yml", SECRETS);
  const s = compose.services;
  const running = (command: string) =>
    Object.entries(s).filter(([, svc]) => svc.build !== undefined && svc.command?.[0] === command);

  it("runs three RabbitMQ nodes, PostgreSQL, Mosquitto, two gateways of one share group, two processors and the dashboard", () => {
    for (const name of [...RABBIT_NODES, "postgres", "mosquitto", "dashboard"])
      expect(s[name], name).toBeDefined();
    const gateways = running("gateway").map(([, g]) => g.environment ?? {});
    expect(gateways).toHaveLength(2);
    expect(new Set(gateways.map((g) => g.GATEWAY_SHARE_GROUP)).size, "one share group").toBe(1);
    expect(gateways[0]?.GATEWAY_SHARE_GROUP).toBeTruthy();
    expect(new Set(gateways.map((g) => g.GATEWAY_ID)).size, "a session of its own each").toBe(2);
    expect(running("processor")).toHaveLength(2);
    expect(running("serve")).toHaveLength(1);
  });

  it("refuses to start without the cluster's shared secrets", () => {
    const r = spawnSync("docker-compose", ["-f", `${ROOT}docker-compose.cluster.yml`, "config"], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "" },
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/RABBITMQ_ERLANG_COOKIE|POSTGRES_PASSWORD/);
  });

  it("the RabbitMQ nodes share one cookie and discover each other by the names they run under", () => {
    const conf = readFileSync(`${ROOT}deploy/rabbitmq-cluster.conf`, "utf8");
    for (const name of RABBIT_NODES) {
      const node = s[name] as ComposeService;
      expect(node.hostname).toBe(name);
      expect(node.environment?.RABBITMQ_ERLANG_COOKIE).toBe(SECRETS.RABBITMQ_ERLANG_COOKIE);
      expect(conf).toContain(`= rabbit@${name}\n`);
      const mounted = (node.volumes ?? []).map((v) =>
        typeof v === "string" ? v : `${v.source}:${v.target}`,
      );
      expect(mounted.some((v) => v.includes("deploy/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/"))).toBe(
        true,
      );
    }
  });

  it.each(["gateway", "processor", "serve"])(
    "each %s: a valid configuration, every node in AMQP_URL, the shared database, ports that match",
    (command) => {
      for (const [name, svc] of running(command)) {
        const env = withSecrets(svc, compose.secrets, SECRET_FILES);
        const check = cleanCli(["check", command], env);
        expect(check.code, `${name}: ${check.stdout}${check.stderr}`).toBe(0);
        expect(check.stdout, `${name} prints no password`).not.toContain(SECRETS.POSTGRES_PASSWORD);
        if (command !== "serve") {
          const amqpUrl = readFileSync(env.AMQP_URL_FILE ?? "", "utf8").trim();
          const hosts = splitUrlList(amqpUrl).map((u) => new URL(u).hostname);
          expect(hosts.sort(), `${name}: AMQP_URL`).toEqual(RABBIT_NODES);
          for (const node of RABBIT_NODES) expect(Object.keys(svc.depends_on ?? {})).toContain(node);
        }
        if (command !== "gateway") {
          expect(new URL(env.DATABASE_URL ?? "").hostname, `${name}: DATABASE_URL`).toBe("postgres");
          expect(env.DATABASE_URL).toBe(s.dashboard?.environment?.DATABASE_URL);
        }
        const port = Number(env.HTTP_PORT ?? env.SERVE_PORT);
        expect(ports(svc).map((p) => p.target)).toEqual([port]);
        expect(svc.healthcheck?.test.join(" ")).toContain(`http://127.0.0.1:${port}/`);
        expect(svc.restart).toBe("unless-stopped");
      }
    },
  );

  it("no two services publish the same host port", () => {
    const published = Object.values(s).flatMap((svc) => ports(svc).map((p) => p.published));
    expect(new Set(published).size).toBe(published.length);
  });
});
