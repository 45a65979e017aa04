import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../common/backoff.js";
import { ConfigError, helpText, parseConfig, parsers, setting } from "../../common/config.js";
import { gatewayCommand } from "../../gateway/index.js";
import { processorCommand } from "../../processor/index.js";
import { count, delay } from "../helpers/config-spec.js";

const spec = {
  url: setting({
    flag: "url",
    env: "URL",
    default: "mqtt://localhost:1883",
    description: "u",
    parse: parsers.url("mqtt:"),
  }),
  count,
  delay,
  mode: setting({
    flag: "mode",
    default: "a" as "a" | "b",
    description: "m",
    parse: parsers.oneOf("a", "b"),
  }),
  verbose: setting({ flag: "verbose", default: false, boolean: true, description: "v", parse: parsers.bool }),
};

describe("configuration: flags over environment over defaults", () => {
  it("uses defaults when nothing is given", () => {
    expect(parseConfig(spec, [], {})).toEqual({
      url: "mqtt://localhost:1883",
      count: 10,
      delay: 50,
      mode: "a",
      verbose: false,
    });
  });

  it("an environment variable overrides the default and a flag overrides both", () => {
    expect(parseConfig(spec, [], { COUNT: "20" }).count).toBe(20);
    expect(parseConfig(spec, ["--count", "30"], { COUNT: "20" }).count).toBe(30);
    expect(parseConfig(spec, ["--count=40"], {}).count).toBe(40);
  });

  it("durations take units", () => {
    expect(parseConfig(spec, ["--delay", "2s"], {}).delay).toBe(2_000);
    expect(parseConfig(spec, ["--delay", "1.5s"], {}).delay).toBe(1_500);
    expect(parseConfig(spec, ["--delay", "250"], {}).delay).toBe(250);
  });

  it("the parsed config is frozen", () => {
    expect(Object.isFrozen(parseConfig(spec, [], {}))).toBe(true);
  });

  it.each([
    [["--count", "0"], {}, /^--count="0": must be an integer from 1 to 100$/],
    [["--count", "ten"], {}, /^--count="ten": must be an integer/],
    [[], { COUNT: "1.5" }, /^COUNT="1.5": must be an integer/],
    [["--url", "http://x"], {}, /^--url="http:\/\/x": must use mqtt:$/],
    [["--url", "not a url"], {}, /must be a URL/],
    [["--mode", "c"], {}, /must be one of a, b/],
    [["--delay", "soon"], {}, /must be a duration/],
    [["--nope"], {}, /Unknown option '--nope'/],
  ] as const)("a bad value %j %j fails with one line naming it", (argv, env, message) => {
    expect(() => parseConfig(spec, argv, env)).toThrow(ConfigError);
    expect(() => parseConfig(spec, argv, env)).toThrow(message);
  });

  it("help lists every flag with its variable and default", () => {
    const text = helpText("x [options]", "Does x.", spec);
    expect(text).toContain("--count <value>  [COUNT]  default 10");
    expect(text).toContain("--verbose");
  });

  it("the processor refuses a prefetch smaller than its batch size", () => {
    const config = parseConfig(processorCommand.spec, ["--prefetch", "100", "--batch-size", "500"], {});
    expect(processorCommand.check?.(config)).toMatch(
      /--prefetch \(100\) must be at least --batch-size \(500\)/,
    );
    expect(processorCommand.check?.(parseConfig(processorCommand.spec, [], {}))).toBeUndefined();
  });
});

describe("refusing configurations that would lose data silently", () => {
  it("a gateway named after a container id (a new MQTT session on every restart) is refused", () => {
    const config = parseConfig(gatewayCommand.spec, [], { GATEWAY_ID: "3f9a1c2b4d5e" });
    expect(gatewayCommand.check?.(config)).toMatch(/looks like a container id.*set GATEWAY_ID/);
    expect(
      gatewayCommand.check?.(parseConfig(gatewayCommand.spec, [], { GATEWAY_ID: "edge-7" })),
    ).toBeUndefined();
  });
});

describe("reconnect backoff", () => {
  it("grows exponentially up to the cap, with full jitter", () => {
    expect(backoffDelay(1, 100, 10_000, () => 1)).toBe(100);
    expect(backoffDelay(4, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelay(50, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelay(50, 100, 10_000, () => 0.5)).toBe(5_000);
    expect(backoffDelay(5, 100, 10_000, () => 0)).toBe(100);
  });
});
