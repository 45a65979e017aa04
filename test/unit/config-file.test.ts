import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, collectConfig, parseConfig, parsers, setting } from "../../common/config.js";
import { count, delay } from "../helpers/config-spec.js";

const spec = {
  amqpUrl: setting({
    flag: "amqp-url",
    env: "AMQP_URL",
    default: "amqp://localhost:5672",
    description: "a",
    parse: parsers.url("amqp:"),
  }),
  count,
  delay,
};

function file(content: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "config-file-")), "value");
  writeFileSync(path, content);
  return path;
}

describe("every variable may be given as <NAME>_FILE", () => {
  it("reads the value from the file, dropping one trailing newline", () => {
    expect(parseConfig(spec, [], { AMQP_URL_FILE: file("amqp://u:p@rabbit:5672\n") }).amqpUrl).toBe(
      "amqp://u:p@rabbit:5672",
    );
    expect(parseConfig(spec, [], { COUNT_FILE: file("42") }).count).toBe(42);
    expect(parseConfig(spec, [], { DELAY_FILE: file("2s\r\n") }).delay).toBe(2_000);
  });

  it("drops only one newline: a value that really ends in a blank line is refused as it is", () => {
    expect(() => parseConfig(spec, [], { COUNT_FILE: file("42\n\n") })).toThrow(
      /^COUNT \(from COUNT_FILE\)="42\\n": must be an integer/,
    );
  });

  it("a flag still overrides the file", () => {
    expect(parseConfig(spec, ["--count", "7"], { COUNT_FILE: file("42\n") }).count).toBe(7);
  });

  it("both the variable and its _FILE set is a one-line error", () => {
    const run = () => parseConfig(spec, [], { COUNT: "3", COUNT_FILE: file("4\n") });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(/^COUNT and COUNT_FILE are both set; give only one$/);
  });

  it("a file that cannot be read is a one-line error naming the variable and the path", () => {
    const missing = join(tmpdir(), "no-such-dir-config-file", "value");
    expect(() => parseConfig(spec, [], { COUNT_FILE: missing })).toThrow(
      `COUNT_FILE="${missing}": cannot read the file (ENOENT)`,
    );
    if (process.getuid?.() !== 0) {
      const locked = file("5");
      chmodSync(locked, 0o000);
      expect(() => parseConfig(spec, [], { COUNT_FILE: locked })).toThrow(/cannot read the file \(EACCES\)/);
    }
  });

  it("an empty _FILE variable counts as unset, as an empty variable does", () => {
    expect(parseConfig(spec, [], { COUNT_FILE: "", COUNT: "" }).count).toBe(10);
  });
});

describe("reading a whole configuration reports every problem at once", () => {
  it("lists unknown flags, missing values and every bad setting, one line each", () => {
    const { config, problems } = collectConfig(spec, ["--nope", "--count", "0", "--delay"], {
      AMQP_URL: "http://x",
    });
    expect(config).toBeUndefined();
    expect(problems).toEqual([
      "Unknown option '--nope'",
      "Option '--delay <value>' argument missing",
      'AMQP_URL="http://x": must use amqp:',
      '--count="0": must be an integer from 1 to 100',
    ]);
  });

  it("a good configuration has no problems", () => {
    expect(collectConfig(spec, [], {}).problems).toEqual([]);
  });
});
