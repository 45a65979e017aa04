import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeSchema, formatVersions } from "../../schemas/command.js";
import { SchemaRegistry } from "../../schemas/index.js";
import { runCli } from "../../scripts/spawn.js";

const SCHEMA_DIR = join(import.meta.dirname, "..", "..", "schemas");
const FIXTURE_DIR = join(import.meta.dirname, "..", "fixtures", "schemas-incompatible");

describe("telemetry schemas list", () => {
  it("shows each version with its file, fingerprint and fields with types and defaults, the current marked", () => {
    const registry = SchemaRegistry.load(SCHEMA_DIR);
    const text = formatVersions(registry.versions, SCHEMA_DIR);
    const lines = text.split("\n");
    expect(lines[0]).toBe(
      `Schema versions in ${SCHEMA_DIR} (the highest of each kind is current: the gateway writes it, the processor reads them all)`,
    );
    expect(lines).toContain("reading.v1.avsc  version 1  fingerprint bc2b1fcf13ae91b0");
    expect(lines).toContain("reading.v2.avsc  version 2  fingerprint 36d23d40ee824d5f  (current)");
    const v2 = lines.slice(
      lines.indexOf("reading.v2.avsc  version 2  fingerprint 36d23d40ee824d5f  (current)") + 1,
    );
    expect(v2.map((l) => l.trim().replace(/ {2,}/g, " | "))).toEqual([
      "device_id | string",
      "sensor | string",
      "ts | long (timestamp-millis)",
      "value | double",
      "unit | [null, string] | default null",
      "seq | [null, long] | default null",
      "gateway_id | string",
      "received_at | long (timestamp-millis)",
      'quality | enum Quality {good, uncertain, bad} | default "good"',
      "tags | map<string> | default {}",
      "",
    ]);
  });

  it("describes every kind of Avro type in a short form", () => {
    expect(describeSchema("int")).toBe("int");
    expect(describeSchema({ type: "string" })).toBe("string");
    expect(describeSchema({ type: { type: "int", logicalType: "date" } })).toBe("int (date)");
    expect(describeSchema({ type: "array", items: ["null", "long"] })).toBe("array<[null, long]>");
    expect(describeSchema({ type: "fixed", name: "Hash", size: 16 })).toBe("fixed Hash (16 bytes)");
    expect(describeSchema({ type: "record", name: "Location", fields: [] })).toBe("record Location");
  });

  it("prints the versions as JSON for scripts, and exits 0", async () => {
    const r = await runCli(["schemas", "list", "--format", "json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      versions: { version: number; fingerprint: string; current: boolean; fields: { name: string }[] }[];
    };
    expect(out.versions.map((v) => [v.version, v.fingerprint, v.current])).toEqual([
      [1, "bc2b1fcf13ae91b0", false],
      [2, "36d23d40ee824d5f", true],
      [1, "56f04c231c7ac60e", true],
    ]);
    expect(out.versions[1]!.fields.map((f) => f.name).slice(-2)).toEqual(["quality", "tags"]);
  });
});

describe("telemetry schemas check", () => {
  it("passes for the repository's schemas and says what it compared", async () => {
    const r = await runCli(["schemas", "check"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(
      `schemas ok: 3 versions in ${SCHEMA_DIR}; each reads data written with every earlier one (1 pair checked)\n`,
    );
  });

  it("catches a breaking change: exit code 1 and the exact field that breaks", async () => {
    const r = await runCli(["schemas", "check", "--dir", FIXTURE_DIR]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines.slice(0, 2)).toEqual([
      "reading.v3.avsc cannot read data written with reading.v1.avsc: field `battery` has no default and is missing in the writer",
      "reading.v3.avsc cannot read data written with reading.v2.avsc: field `battery` has no default and is missing in the writer",
    ]);
    expect(lines[2]).toMatch(
      /^schemas check failed in .*schemas-incompatible: 2 of 3 pairs of versions do not resolve/,
    );
  });

  it("reads the folder from SCHEMAS_DIR when --dir is not given", async () => {
    const r = await runCli(["schemas", "check"], { SCHEMAS_DIR: FIXTURE_DIR });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("field `battery`");
  });

  it("refuses a --dir that is not a folder with exit code 2, naming the option", async () => {
    const r = await runCli(["schemas", "check", "--dir", join(FIXTURE_DIR, "missing")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `telemetry schemas check: --dir=${JSON.stringify(join(FIXTURE_DIR, "missing"))}: must be an existing folder\n`,
    );
  });
});

describe("telemetry schemas", () => {
  it("without a subcommand, or with an unknown one, exits 2 with one line", async () => {
    const [none, unknown] = await Promise.all([runCli(["schemas"]), runCli(["schemas", "verify"])]);
    expect(none).toMatchObject({
      code: 2,
      stderr: "telemetry schemas: a subcommand is missing; one of check, list (try --help)\n",
    });
    expect(unknown).toMatchObject({
      code: 2,
      stderr: 'telemetry schemas: unknown subcommand "verify"; one of check, list (try --help)\n',
    });
  });

  it("--help lists the subcommands; after a subcommand it shows that one's options", async () => {
    const [group, check, list, top] = await Promise.all([
      runCli(["schemas", "--help"]),
      runCli(["schemas", "check", "--help"]),
      runCli(["schemas", "list", "-h"]),
      runCli(["--help"]),
    ]);
    expect(group.code).toBe(0);
    expect(group.stdout).toMatch(/^Usage: telemetry schemas <check\|list> \[options\]/);
    expect(group.stdout).toMatch(/^ {2}check {2}/m);
    expect(group.stdout).toMatch(/^ {2}list {3}/m);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^Usage: telemetry schemas check \[--dir DIR\]/);
    expect(check.stdout).toContain("[SCHEMAS_DIR]");
    expect(list.stdout).toMatch(/^Usage: telemetry schemas list/);
    expect(top.stdout).toMatch(/^ {2}schemas {4}/m);
  });
});
