import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanup, runCli, type TestNames, testNames } from "../helpers/services.js";

const PASSWORD = "Check-S3cret-zz17";

describe("telemetry check", () => {
  let names: TestNames;

  beforeAll(() => {
    names = testNames("opscheck");
  });
  afterAll(async () => {
    await cleanup(names);
  });

  it("a good configuration prints the effective settings and, with --connect, reaches RabbitMQ, MQTT and the store: exit 0", async () => {
    const gateway = await runCli(["check", "gateway", "--connect"], names.env);
    expect(gateway.code, gateway.stdout + gateway.stderr).toBe(0);
    expect(gateway.stdout).toContain("gateway: configuration OK");
    expect(gateway.stdout).toMatch(/^ {2}DRAIN_TIMEOUT\s+10s$/m);
    expect(gateway.stdout).toMatch(/^gateway: RabbitMQ amqp:\/\/guest:\*\*\*@[^ ]+: ok, connected$/m);
    expect(gateway.stdout).toMatch(/^gateway: MQTT mqtt:\/\/[^ ]+: ok, connected$/m);
    expect(gateway.stdout).not.toContain("guest:guest");
    const processor = await runCli(["check", "processor", "--connect"], names.env);
    expect(processor.code, processor.stdout + processor.stderr).toBe(0);
    expect(processor.stdout).toContain("processor: configuration OK");
    expect(processor.stdout).toMatch(/^processor: store [^ ]+telemetry\.db: ok, .*will create it$/m);
  });

  it("checks every service when none is named: the dashboard's store must exist, so a missing database fails it", async () => {
    const run = await runCli(["check", "--connect"], names.env);
    expect(run.code).toBe(1);
    for (const service of ["gateway", "processor", "serve"]) {
      expect(run.stdout).toContain(`${service}: configuration OK`);
    }
    expect(run.stdout).toMatch(/^serve: store \S+telemetry\.db: FAILED, \S+ does not exist$/m);
    expect(run.stdout.match(/FAILED/g)).toHaveLength(1);
  });

  it("reports every problem of the configuration at once, one line each: exit 1", async () => {
    const run = await runCli(["check", "processor", "--prefetch", "0", "--batch-delay", "soon", "--bogus"], {
      ...names.env,
      AMQP_URL: `amqp://guest:${PASSWORD}@localhost:5672:bad`,
    });
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split("\n")).toEqual([
      "processor: Unknown option '--bogus'",
      'processor: AMQP_URL="amqp://guest:***@localhost:5672:bad": must be a URL such as amqp://host:port',
      'processor: --prefetch="0": must be an integer from 1 to 65535',
      'processor: --batch-delay="soon": must be a duration such as 500ms, 10s, 5m or 1h',
    ]);
  });

  it("a refused password and an unreachable MQTT broker each fail with one line naming the broker and the reason, the password masked: exit 1", async () => {
    const file = join(names.dir, "amqp-url");
    writeFileSync(file, `${names.amqpUrl.replace(/\/\/[^@]*@/, `//guest:${PASSWORD}@`)}\n`);
    const run = await runCli(["check", "gateway", "--connect", "--mqtt-url", "mqtt://127.0.0.1:9"], {
      ...names.env,
      AMQP_URL: "",
      AMQP_URL_FILE: file,
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^gateway: RabbitMQ amqp:\/\/guest:\*\*\*@\S+: FAILED, .*ACCESS.REFUSED/m);
    expect(run.stdout).toMatch(/^gateway: MQTT mqtt:\/\/127\.0\.0\.1:9: FAILED, connect ECONNREFUSED/m);
    expect(run.stdout + run.stderr).not.toContain(PASSWORD);
  });

  it("a database the processor could not create fails the store check", async () => {
    const notAFolder = join(names.dir, "plain-file");
    writeFileSync(notAFolder, "");
    const db = join(notAFolder, "telemetry.db");
    const run = await runCli(["check", "processor", "--connect", "--db", db], names.env);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(
      `processor: store ${db}: FAILED, cannot create ${db}: ${notAFolder} is not a folder`,
    );
  });
});
