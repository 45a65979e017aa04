import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  collectConfig,
  effectiveConfig,
  helpText,
  parseConfig,
  parsers,
  redact,
  redactUrl,
  secrecyOf,
  setting,
} from "../../common/config.js";
import { gatewayCommand } from "../../gateway/index.js";
import { processorCommand } from "../../processor/index.js";
import { runCli } from "../../scripts/spawn.js";
import { simulateCommand } from "../../simulators/index.js";

const PASSWORD = "Sup3rS3cret-zq81";

const spec = {
  amqpUrl: setting({
    flag: "amqp-url",
    env: "AMQP_URL",
    default: "amqp://guest:guest@localhost:5672",
    description: "a",
    parse: parsers.url("amqp:"),
  }),
  mqttPassword: setting({
    flag: "mqtt-password",
    env: "MQTT_PASSWORD",
    default: undefined as string | undefined,
    description: "p",
    parse: parsers.string({ max: 10 }),
  }),
  apiKey: setting({
    flag: "api-key",
    env: "API_KEY",
    default: "",
    description: "k",
    secret: true,
    parse: parsers.string({ max: 5 }),
  }),
  queue: setting({ flag: "queue", env: "QUEUE", default: "q", description: "q", parse: parsers.string() }),
};

describe("secrets never print", () => {
  it("a URL prints with only its password masked, whether it parses or not, and each URL of a list", () => {
    expect(redactUrl("amqp://user:pw@host:5672/vh")).toBe("amqp://user:***@host:5672/vh");
    expect(redactUrl(`amqp://user:${PASSWORD}@localhost:5672:bad`)).toBe(
      "amqp://user:***@localhost:5672:bad",
    );
    expect(redactUrl("amqp://u:a@b/c,d@h1:5672,amqp://v:x@h2:5672")).toBe(
      "amqp://u:***@h1:5672,amqp://v:***@h2:5672",
    );
    expect(redactUrl("amqp://user@host:5672")).toBe("amqp://user@host:5672");
    expect(redactUrl("mqtt://host:1883")).toBe("mqtt://host:1883");
    expect(redactUrl("cannot connect to amqp://u:p@h: refused")).toBe(
      "cannot connect to amqp://u:***@h: refused",
    );
  });

  it("variables named like secrets are secret without being marked: passwords whole, URLs' passwords", () => {
    expect(secrecyOf({ flag: "x", env: "MQTT_PASSWORD" })).toBe(true);
    expect(secrecyOf({ flag: "x", env: "DATABASE_URL" })).toBe("url");
    expect(secrecyOf({ flag: "x", env: "AMQP_URL" })).toBe("url");
    expect(secrecyOf({ flag: "x", env: "QUEUE" })).toBe(false);
    expect(secrecyOf({ flag: "x", env: "QUEUE", secret: true })).toBe(true);
    expect(redact({ flag: "x", env: "MQTT_PASSWORD" }, PASSWORD)).toBe("***");
  });

  it("an error about a secret setting masks it, from a flag, a variable or a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "config-secrets-"));
    const file = join(dir, "amqp-url");
    writeFileSync(file, `amqp://user:${PASSWORD}@localhost:5672:bad\n`);
    const cases: [string[], Record<string, string>][] = [
      [["--amqp-url", `amqp://user:${PASSWORD}@localhost:5672:bad`], {}],
      [[], { AMQP_URL: `amqp://user:${PASSWORD}@localhost:5672:bad` }],
      [[], { AMQP_URL_FILE: file }],
      [[], { MQTT_PASSWORD: `${PASSWORD}-much-too-long` }],
      [["--api-key", PASSWORD], {}],
    ];
    for (const [argv, env] of cases) {
      const { problems } = collectConfig(spec, argv, env);
      expect(problems).toHaveLength(1);
      expect(problems[0]).not.toContain(PASSWORD);
      expect(problems[0]).toMatch(/\*\*\*/);
    }
    expect(() => parseConfig(spec, [], { AMQP_URL: `amqp://user:${PASSWORD}@h:1:bad` })).toThrow(
      'AMQP_URL="amqp://user:***@h:1:bad": must be a URL such as amqp://host:port',
    );
  });

  it("the effective configuration masks secrets and shows the rest as given", () => {
    const config = parseConfig(spec, ["--mqtt-password", "pw", "--api-key", "k1"], {
      AMQP_URL: "amqp://svc:pw@rabbit:5672",
      QUEUE: "readings",
    });
    expect(effectiveConfig(spec, config)).toEqual({
      AMQP_URL: "amqp://svc:***@rabbit:5672",
      MQTT_PASSWORD: "***",
      API_KEY: "***",
      QUEUE: "readings",
    });
    expect(effectiveConfig(spec, parseConfig(spec, [], {})).MQTT_PASSWORD).toBe("(unset)");
  });

  it("--help shows a default URL's password as ***", () => {
    const text = helpText("x", "X.", spec);
    expect(text).toContain('default "amqp://guest:***@localhost:5672"');
    expect(text).not.toContain("guest:guest");
  });

  it("the CLI prints no password from any secret variable, given directly or as _FILE, in errors or help", async () => {
    const dir = mkdtempSync(join(tmpdir(), "config-secrets-cli-"));
    const printed: string[] = [];
    for (const command of [gatewayCommand, processorCommand, simulateCommand]) {
      const secrets = Object.values(command.spec).filter((s) => s.env && secrecyOf(s) !== false);
      expect(secrets.length).toBeGreaterThan(0);
      for (const s of secrets) {
        const env = s.env as string;
        const bad = secrecyOf(s) === "url" ? `amqp://user:${PASSWORD}@localhost:5672:bad` : PASSWORD;
        const file = join(dir, `${command.name}-${env}`);
        writeFileSync(file, `${bad}\n`);
        for (const given of [{ [env]: bad }, { [env]: "", [`${env}_FILE`]: file }]) {
          const run = await runCli([command.name], given);
          printed.push(run.stdout, run.stderr);
          if (secrecyOf(s) === "url") {
            expect(run.code, `${command.name} ${JSON.stringify(given)}: ${run.stderr}`).toBe(2);
            expect(run.stderr).toContain(`${env}`);
            expect(run.stderr).toContain("***");
          }
        }
        const help = await runCli([command.name, "--help"], { [env]: bad });
        printed.push(help.stdout, help.stderr);
      }
    }
    // A good configuration holding the password, as `check` prints it (the effective configuration).
    const good = {
      AMQP_URL: `amqp://guest:${PASSWORD}@127.0.0.1:5672`,
      MQTT_URL: `mqtt://user:${PASSWORD}@127.0.0.1:1883`,
    };
    const check = await runCli(["check"], good);
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout).toMatch(/^ {2}AMQP_URL\s+amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672$/m);
    printed.push(check.stdout, check.stderr);
    const top = await runCli(["--help"], {});
    printed.push(top.stdout, top.stderr);
    for (const text of printed) expect(text).not.toContain(PASSWORD);
  });
});
