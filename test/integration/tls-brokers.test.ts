import { execFile } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTestCerts, type TestCerts } from "../helpers/certs.js";
import { report, until } from "../helpers/fault-stream.js";
import {
  freePort,
  type PrivateMosquitto,
  type PrivateRabbit,
  startPrivateMosquitto,
  startPrivateRabbit,
} from "../helpers/private-brokers.js";
import {
  countRows,
  httpGet,
  runCli,
  type Service,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";
import { spawnService, type UnstartedService } from "../helpers/unstarted-service.js";

const execFileAsync = promisify(execFile);

/** Distinctive, so that finding it anywhere in what the services printed or served is a leak. */
const MQTT_PASSWORD = "Mq77-Sup3rS3cret-tls-c81e";
const AMQP_PASSWORD = "Amqp-Sup3rS3cret-tls-5d02";
const WRONG_PASSWORD = "Wr0ng-Sup3rS3cret-tls-9a7f";
const PASSWORDS = [MQTT_PASSWORD, AMQP_PASSWORD, WRONG_PASSWORD];
const MQTT_USER = "telemetry-gw";
const AMQP_USER = "telemetry-tls";
const READINGS = 20;

let certs: TestCerts;
let mosquitto: PrivateMosquitto;
let rabbit: PrivateRabbit;
/** The RabbitMQ node's TLS listener (its plain one is `rabbit.port`). */
let amqpsPort: number;
let mqttsUrl: string;
let amqpsUrl: string;

/** Each test's own directory, deleted after the test (its queues live on the private node, which goes). */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Environment of a service that uses both brokers over TLS with client certificates, all settings right. */
function tlsEnv(names: TestNames): Record<string, string> {
  if (!dirs.includes(names.dir)) dirs.push(names.dir);
  return {
    ...names.env,
    MQTT_URL: mqttsUrl,
    MQTT_CA_FILE: certs.ca,
    MQTT_CERT_FILE: certs.clientCert,
    MQTT_KEY_FILE: certs.clientKey,
    MQTT_USERNAME: MQTT_USER,
    MQTT_PASSWORD: MQTT_PASSWORD,
    AMQP_URL: amqpsUrl,
    AMQP_CA_FILE: certs.ca,
    AMQP_CERT_FILE: certs.clientCert,
    AMQP_KEY_FILE: certs.clientKey,
  };
}

/** Everything a service printed, and what it serves on /readyz and /metrics now. */
async function everything(port: number, output: string): Promise<string> {
  const served = await Promise.all(
    ["/readyz", "/metrics", "/healthz"].map((p) => httpGet(port, p).then((r) => r.body)),
  );
  return [output, ...served].join("\n");
}

function expectNoPassword(text: string): void {
  for (const p of PASSWORDS) expect(text).not.toContain(p);
}

beforeAll(async () => {
  certs = await makeTestCerts();
  const passwordFile = join(certs.dir, "mosquitto.passwd");
  writeFileSync(passwordFile, "");
  await execFileAsync("mosquitto_passwd", ["-b", passwordFile, MQTT_USER, MQTT_PASSWORD]);
  mosquitto = await startPrivateMosquitto({
    extraConfig: [
      `cafile ${certs.ca}`,
      `certfile ${certs.serverCert}`,
      `keyfile ${certs.serverKey}`,
      "require_certificate true",
      "allow_anonymous false",
      `password_file ${passwordFile}`,
    ],
  });
  mqttsUrl = `mqtts://127.0.0.1:${mosquitto.port}`;
  amqpsPort = await freePort();
  rabbit = await startPrivateRabbit({
    extraConfig: [
      `listeners.ssl.default = 127.0.0.1:${amqpsPort}`,
      `ssl_options.cacertfile = ${certs.ca}`,
      `ssl_options.certfile = ${certs.serverCert}`,
      `ssl_options.keyfile = ${certs.serverKey}`,
      "ssl_options.verify = verify_peer",
      "ssl_options.fail_if_no_peer_cert = true",
    ],
  });
  await rabbit.ctl("add_user", AMQP_USER, AMQP_PASSWORD);
  await rabbit.ctl("set_permissions", "-p", "/", AMQP_USER, ".*", ".*", ".*");
  amqpsUrl = `amqps://${AMQP_USER}:${AMQP_PASSWORD}@127.0.0.1:${amqpsPort}`;
}, 120_000);

afterAll(async () => {
  await mosquitto?.stop();
  await rabbit?.stop();
  certs?.remove();
});

describe("TLS and credentials: the right CA, client certificate and password", () => {
  const services: Service[] = [];
  afterEach(async () => {
    for (const s of services.splice(0)) await s.stop("SIGKILL");
  });

  it("readings the simulator publishes over mqtts go through a gateway on mqtts and amqps and are stored by a processor on amqps (passwords from _FILE), status reads the queues over amqps, and no password is printed or served", async () => {
    const names = testNames("tls-ok");
    // The processor takes its URL, password included, from a file (AMQP_URL_FILE), as from a Docker secret.
    const urlFile = join(names.dir, "amqp-url");
    writeFileSync(urlFile, `${amqpsUrl}\n`);
    const { AMQP_URL: _, ...processorEnv } = tlsEnv(names);
    // An empty AMQP_URL counts as unset: the test runner's own must not reach the service.
    const processor = await startService("processor", {
      ...processorEnv,
      AMQP_URL: "",
      AMQP_URL_FILE: urlFile,
    });
    services.push(processor);
    const passwordFile = join(names.dir, "mqtt-password");
    writeFileSync(passwordFile, `${MQTT_PASSWORD}\n`);
    const { MQTT_PASSWORD: __, ...gatewayEnv } = tlsEnv(names);
    const gateway = await startService("gateway", { ...gatewayEnv, MQTT_PASSWORD_FILE: passwordFile });
    services.push(gateway);
    await untilReady(gateway, processor);

    const sim = await runCli(["simulate", "--count", String(READINGS), "--devices", "2", "--rate", "0"], {
      ...tlsEnv(names),
      SIM_DEVICE_PREFIX: names.id,
    });
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stderr).toContain(`${READINGS} acked`);
    await until(`${READINGS} readings stored`, 30_000, async () => countRows(names.dbPath) >= READINGS);
    expect(countRows(names.dbPath)).toBe(READINGS);

    // Both services are connected to the TLS listener, with the user the password belongs to.
    const connections = await rabbit.ctl("list_connections", "user", "ssl", "port", "--quiet");
    const tlsConnections = connections
      .split("\n")
      .filter((l) => l.includes(AMQP_USER) && l.includes("true") && l.includes(String(amqpsPort)));
    expect(tlsConnections.length).toBeGreaterThanOrEqual(2);

    // telemetry status reads the queues over TLS with the same settings: the readings were all consumed.
    const status = await runCli(["status", "--format", "json"], tlsEnv(names));
    const queues = (JSON.parse(status.stdout) as { queues: Record<string, unknown> }).queues;
    expect(queues[names.queue]).toMatchObject({ messages: 0, consumers: 1 });

    const printed = [
      status.stdout,
      status.stderr,
      sim.stdout,
      sim.stderr,
      await everything(gateway.httpPort, gateway.stderr() + JSON.stringify(gateway.logs)),
      await everything(processor.httpPort, processor.stderr() + JSON.stringify(processor.logs)),
    ].join("\n");
    expectNoPassword(printed);
    // The effective configuration each service prints at start shows the password settings masked.
    expect(JSON.stringify(processor.logs)).toContain(`amqps://${AMQP_USER}:***@127.0.0.1:${amqpsPort}`);
    expect(JSON.stringify(gateway.logs)).toMatch(/"MQTT_PASSWORD":"\*\*\*"/);
    report("TLS accepted end to end", {
      stored: countRows(names.dbPath),
      tlsConnections: tlsConnections.length,
    });
  });

  it("telemetry check --connect reaches both brokers over TLS with the same settings", async () => {
    const names = testNames("tls-check");
    const out = await runCli(["check", "gateway", "--connect"], tlsEnv(names));
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.stdout).toContain(`gateway: MQTT ${mqttsUrl}: ok, connected`);
    expect(out.stdout).toContain(
      `gateway: RabbitMQ amqps://${AMQP_USER}:***@127.0.0.1:${amqpsPort}: ok, connected`,
    );
    expectNoPassword(out.stdout + out.stderr);
  });
});

/** One line (no line break inside), naming the broker's address. */
function expectOneLine(text: string, broker: string, reason: RegExp): void {
  expect(text.trimEnd()).not.toContain("\n");
  expect(text).toContain(broker);
  expect(text).toMatch(reason);
}

describe("TLS and credentials refused: one line naming the broker and the reason, in the log and /readyz", () => {
  let service: UnstartedService | undefined;
  afterEach(async () => {
    await service?.kill("SIGKILL");
    service = undefined;
  });

  const mqttCases = [
    {
      label: "a wrong CA (the broker's certificate is not trusted)",
      env: (): Record<string, string> => ({ MQTT_CA_FILE: certs.rogueCa }),
      reason: /TLS: the broker's certificate is not trusted \([A-Z_]+: .+\): check MQTT_CA_FILE/,
    },
    {
      label: "a wrong client certificate (signed by another CA)",
      env: (): Record<string, string> => ({
        MQTT_CERT_FILE: certs.rogueClientCert,
        MQTT_KEY_FILE: certs.rogueClientKey,
      }),
      reason:
        /TLS: the broker refused our client certificate \([A-Z0-9_]+\): check MQTT_CERT_FILE and MQTT_KEY_FILE/,
    },
    {
      label: "a wrong password",
      env: (): Record<string, string> => ({ MQTT_PASSWORD: WRONG_PASSWORD }),
      reason:
        /broker refused the connection: reason 0x8[67] \([^)]+\): check MQTT_USERNAME and MQTT_PASSWORD/,
    },
  ];
  for (const c of mqttCases) {
    it(`a gateway given ${c.label} for Mosquitto says so in one line naming it and retries`, async () => {
      const names = testNames("tls-mqtt-refused");
      const s = await spawnService("gateway", { ...tlsEnv(names), ...c.env() });
      service = s;
      const broker = `127.0.0.1:${mosquitto.port}`;
      const failures = () => s.logs.filter((l) => /^MQTT connection to .* failed: /.test(String(l.msg)));
      await until("the gateway reports two failed MQTT attempts", 30_000, async () => failures().length >= 2);
      const ready = await httpGet(s.httpPort, "/readyz");
      expect(ready.status).toBe(503);
      expectOneLine(ready.body, broker, c.reason);
      expect(ready.body).toMatch(
        /^not ready: mqtt not connected: MQTT connection to 127\.0\.0\.1:\d+ failed: /,
      );
      for (const line of failures()) expectOneLine(String(line.msg), broker, c.reason);
      expectNoPassword(await everything(s.httpPort, s.output()));
      report(`gateway, Mosquitto, ${c.label}`, { readyz: ready.body.trim(), attempts: failures().length });
    });
  }

  const amqpCases = [
    {
      label: "a wrong CA (the broker's certificate is not trusted)",
      env: (): Record<string, string> => ({ AMQP_CA_FILE: certs.rogueCa }),
      reason: /TLS refused \([A-Z_]+: .+\): check AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE/,
    },
    {
      label: "a wrong client certificate (signed by another CA)",
      env: (): Record<string, string> => ({
        AMQP_CERT_FILE: certs.rogueClientCert,
        AMQP_KEY_FILE: certs.rogueClientKey,
      }),
      reason: /TLS refused \(ERR_SSL_\w+_ALERT_\w+\): check AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE/,
    },
    {
      label: "a wrong password",
      env: (): Record<string, string> => ({
        AMQP_URL: `amqps://${AMQP_USER}:${WRONG_PASSWORD}@127.0.0.1:${amqpsPort}`,
      }),
      reason: /refused the login \(ACCESS_REFUSED\): check the user name and password of AMQP_URL/,
    },
  ];
  for (const c of amqpCases) {
    it(`a processor given ${c.label} for RabbitMQ says so in one line naming it and retries`, async () => {
      const names = testNames("tls-amqp-refused");
      const s = await spawnService("processor", { ...tlsEnv(names), ...c.env() });
      service = s;
      const broker = `127.0.0.1:${amqpsPort}`;
      const failures = () => s.logs.filter((l) => l.msg === "amqp connect failed");
      await until("the processor reports a failed attempt", 30_000, async () => failures().length >= 1);
      const ready = await httpGet(s.httpPort, "/readyz");
      expect(ready.status).toBe(503);
      expectOneLine(ready.body, broker, c.reason);
      expect(ready.body).toMatch(/^not ready: rabbitmq not connected: 127\.0\.0\.1:\d+/);
      for (const line of failures()) {
        expect(line.broker).toBe(broker);
        expectOneLine(String(line.err), broker, c.reason);
      }
      expectNoPassword(await everything(s.httpPort, s.output()));
      report(`processor, RabbitMQ, ${c.label}`, { readyz: ready.body.trim(), attempts: failures().length });
    });
  }

  const simCases = [
    {
      label: "a wrong CA",
      env: (): Record<string, string> => ({ MQTT_CA_FILE: certs.rogueCa }),
      reason: mqttCases[0]?.reason,
    },
    {
      label: "a wrong password",
      env: (): Record<string, string> => ({ MQTT_PASSWORD: WRONG_PASSWORD }),
      reason: /Bad username or Password|Not authorized/i,
    },
  ];
  for (const c of simCases) {
    it(`the simulator given ${c.label} exits 1 with one line naming the broker and the reason`, async () => {
      const names = testNames("tls-sim-refused");
      const out = await runCli(["simulate", "--count", "1"], { ...tlsEnv(names), ...c.env() });
      expect(out.code).toBe(1);
      const line = out.stderr.trim();
      expectOneLine(line, `mqtts://127.0.0.1:${mosquitto.port}`, c.reason ?? /./);
      expect(line).toMatch(/^simulate: cannot reach the MQTT broker at /);
      expectNoPassword(out.stdout + out.stderr);
      report(`simulate, Mosquitto, ${c.label}`, { stderr: line });
    });
  }

  it("TLS files with a plain URL are refused before anything connects (exit 2, one line)", async () => {
    const names = testNames("tls-plain");
    const out = await runCli(["processor"], { ...tlsEnv(names), AMQP_URL: names.amqpUrl });
    expect(out.code).toBe(2);
    expect(out.stderr.trim()).toBe(
      "telemetry processor: AMQP_CA_FILE, AMQP_CERT_FILE, AMQP_KEY_FILE set but AMQP_URL is not amqps://: the " +
        "connection would not use TLS; use amqps://host:port",
    );
  });
});
