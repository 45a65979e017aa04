import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CLI } from "../../scripts/spawn.js";
import { cleanup, httpGet, startService, type TestNames, testNames } from "../helpers/services.js";

const PASSWORD = "Zq7-Distinctive-Leak-Check";

describe("secrets never appear in what the services print or serve", () => {
  let names: TestNames;

  beforeAll(() => {
    names = testNames("opssecrets");
  });
  afterAll(async () => {
    await cleanup(names);
  });

  it("a gateway whose MQTT URL holds a password (from MQTT_URL_FILE) shows it in no log line, /metrics or /readyz", async () => {
    const file = join(names.dir, "mqtt-url");
    const url = new URL(names.mqttUrl);
    url.username = "sensor-gw";
    url.password = PASSWORD; // the shared Mosquitto allows anonymous clients, so any password is accepted
    writeFileSync(file, `${url.href}\n`);
    const gateway = await startService("gateway", { ...names.env, MQTT_URL: "", MQTT_URL_FILE: file });
    try {
      const served = await Promise.all(
        ["/metrics", "/readyz", "/healthz"].map((p) => httpGet(gateway.httpPort, p)),
      );
      expect(served[1]?.status).toBe(200);
      await gateway.stop();
      const everything = [JSON.stringify(gateway.logs), gateway.stderr(), ...served.map((s) => s.body)].join(
        "\n",
      );
      expect(everything).toContain("started");
      expect(everything).not.toContain(PASSWORD);
    } finally {
      await gateway.stop();
    }
  });

  it("a processor refused by RabbitMQ for its password says so without the password", async () => {
    const amqpUrl = new URL(names.amqpUrl);
    amqpUrl.password = PASSWORD;
    const proc = spawn(process.execPath, [CLI, "processor"], {
      env: { ...process.env, ...names.env, AMQP_URL: amqpUrl.href },
    });
    let output = "";
    proc.stdout.on("data", (c: Buffer) => {
      output += c.toString();
    });
    proc.stderr.on("data", (c: Buffer) => {
      output += c.toString();
    });
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    try {
      await vi.waitFor(() => expect(output).toMatch(/ACCESS.REFUSED/), { timeout: 15_000 });
    } finally {
      proc.kill("SIGKILL");
      await exited;
    }
    expect(output).not.toContain(PASSWORD);
  });
});
