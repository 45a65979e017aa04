import { statSync } from "node:fs";
import { defineCommand, defineGroup } from "../common/command.js";
import { parsers, setting } from "../common/config.js";
import { checkVersions } from "./compat.js";
import { readSchemaFiles, SchemaRegistry, type SchemaVersion } from "./index.js";
import { isObject } from "./json.js";

const schemasDir = setting({
  flag: "dir",
  env: "SCHEMAS_DIR",
  default: undefined as string | undefined,
  defaultLabel: "the schemas/ folder of the installation",
  description: "Folder of the reading.v<N>.avsc files.",
  parse: (raw) => {
    let folder = false;
    try {
      folder = statSync(raw).isDirectory();
    } catch {
      // reported below
    }
    if (!folder) throw new Error("must be an existing folder");
    return raw;
  },
});

/** A field's type as a person reads it: `string`, `long (timestamp-millis)`, `[null, string]`, `map<string>`. */
export function describeSchema(schema: unknown): string {
  if (typeof schema === "string") return schema;
  if (Array.isArray(schema)) return `[${schema.map(describeSchema).join(", ")}]`;
  if (!isObject(schema)) return JSON.stringify(schema);
  const { type } = schema;
  if (typeof type !== "string") return describeSchema(type);
  switch (type) {
    case "array":
      return `array<${describeSchema(schema.items)}>`;
    case "map":
      return `map<${describeSchema(schema.values)}>`;
    case "enum":
      return `enum ${String(schema.name)} {${(schema.symbols as unknown[]).join(", ")}}`;
    case "fixed":
      return `fixed ${String(schema.name)} (${String(schema.size)} bytes)`;
    case "record":
    case "error":
      return `${type} ${String(schema.name)}`;
  }
  return typeof schema.logicalType === "string" ? `${type} (${schema.logicalType})` : type;
}

function fieldsOf(v: SchemaVersion): Record<string, unknown>[] {
  return Array.isArray(v.schema.fields) ? v.schema.fields.filter(isObject) : [];
}

/** `telemetry schemas list` as text: each version with its file, fingerprint and fields (type, default). */
export function formatVersions(versions: readonly SchemaVersion[], dir: string): string {
  const current = currentOf(versions);
  const lines = [
    `Schema versions in ${dir} (the highest of each kind is current: the gateway writes it, the processor reads them all)`,
  ];
  for (const v of versions) {
    lines.push(
      "",
      `${v.file}  version ${v.version}  fingerprint ${v.fingerprintHex}${current.has(v) ? "  (current)" : ""}`,
    );
    const fields = fieldsOf(v);
    const width = Math.max(...fields.map((f) => String(f.name).length));
    const types = fields.map((f) => describeSchema(f.type));
    const typeWidth = Math.max(...types.map((t) => t.length));
    for (const [i, f] of fields.entries()) {
      const name = String(f.name).padEnd(width);
      const def = "default" in f ? `  default ${JSON.stringify(f.default)}` : "";
      lines.push(`  ${name}  ${def ? types[i]!.padEnd(typeWidth) : types[i]!}${def}`.trimEnd());
    }
  }
  return `${lines.join("\n")}\n`;
}

/** `reading` for `reading.v<N>.avsc`, `batch` for `reading-batch.v<N>.avsc`. */
function kindOf(v: SchemaVersion): "reading" | "batch" {
  return v.file.startsWith("reading-batch.") ? "batch" : "reading";
}

/** The highest version of each kind (the list holds each kind lowest first). */
function currentOf(versions: readonly SchemaVersion[]): Set<SchemaVersion> {
  const last = new Map<string, SchemaVersion>();
  for (const v of versions) last.set(kindOf(v), v);
  return new Set(last.values());
}

/** `telemetry schemas list --format json`: the same as plain data, each field with its schema as written. */
export function versionsAsJson(versions: readonly SchemaVersion[], dir: string): string {
  const current = currentOf(versions);
  return `${JSON.stringify(
    {
      dir,
      versions: versions.map((v) => ({
        version: v.version,
        file: v.file,
        fingerprint: v.fingerprintHex,
        kind: kindOf(v),
        current: current.has(v),
        canonical: v.canonical,
        fields: fieldsOf(v).map((f) => ({
          name: f.name,
          type: f.type,
          ...("default" in f ? { default: f.default } : {}),
          ...(f.doc === undefined ? {} : { doc: f.doc }),
        })),
      })),
    },
    null,
    2,
  )}\n`;
}

const listCommand = defineCommand({
  name: "schemas list",
  usage: "telemetry schemas list [--dir DIR] [--format text|json]",
  summary:
    "Lists the schema versions: file, fingerprint (hex, as on the wire) and fields with types and defaults.\n" +
    "The highest version is current: the gateway writes it, the processor reads every version listed.",
  spec: {
    dir: schemasDir,
    format: setting({
      flag: "format",
      default: "text" as "text" | "json",
      description: "text for people, json for scripts.",
      parse: parsers.oneOf("text", "json"),
    }),
  },
  run: async (config) => {
    let registry: SchemaRegistry;
    let dir: string;
    try {
      dir = readSchemaFiles(config.dir).dir;
      registry = SchemaRegistry.load(dir);
    } catch (err) {
      process.stderr.write(`telemetry schemas list: ${(err as Error).message}\n`);
      return 1;
    }
    const format = config.format === "json" ? versionsAsJson : formatVersions;
    process.stdout.write(format([...registry.versions, ...registry.batchVersions], dir));
    return 0;
  },
});

const checkCommand = defineCommand({
  name: "schemas check",
  usage: "telemetry schemas check [--dir DIR]",
  summary:
    "Checks that every schema version can read data written with every earlier one (Avro resolution).\n" +
    "A processor with the newest version then stores the messages of every gateway. Exit code 0 when every\n" +
    "pair resolves; 1, with one line naming each field that breaks, when one does not. npm test runs it.",
  spec: { dir: schemasDir },
  run: async (config) => {
    const fail = (lines: readonly string[]) => {
      process.stderr.write(`${lines.join("\n")}\n`);
      return 1;
    };
    let dir: string;
    let report: ReturnType<typeof checkVersions>;
    let count: number;
    try {
      const read = readSchemaFiles(config.dir);
      dir = read.dir;
      // Batch versions are checked among themselves: each reads every earlier batch, items and all.
      const batches = readSchemaFiles(dir, "reading-batch").files;
      count = read.files.length + batches.length;
      const readings = checkVersions(read.files);
      const batchReport = checkVersions(batches);
      report = {
        pairs: readings.pairs + batchReport.pairs,
        failures: [...readings.failures, ...batchReport.failures],
      };
    } catch (err) {
      return fail([`telemetry schemas check: ${(err as Error).message}`]);
    }
    if (report.failures.length > 0) {
      const pairs = new Set(report.failures.map((f) => `${f.reader}\0${f.writer}`)).size;
      return fail([
        ...report.failures.flatMap((f) => f.lines),
        `schemas check failed in ${dir}: ${pairs} of ${report.pairs} pairs of versions do not resolve. A new ` +
          "version may only add fields with a default (or make changes Avro resolves); never edit a released one.",
      ]);
    }
    try {
      // What the processor does at start: also refuses twin fingerprints, and a current batch schema whose items
      // are not the current reading record.
      SchemaRegistry.load(dir);
    } catch (err) {
      return fail([`schemas check failed: ${(err as Error).message}`]);
    }
    process.stdout.write(
      `schemas ok: ${count} version${count === 1 ? "" : "s"} in ${dir}; ` +
        (report.pairs === 0
          ? "nothing to compare\n"
          : `each reads data written with every earlier one (${report.pairs} pair${report.pairs === 1 ? "" : "s"} checked)\n`),
    );
    return 0;
  },
});

/** `telemetry schemas check` and `telemetry schemas list`. */
export const schemasCommand = defineGroup({
  name: "schemas",
  summary:
    "Schema versions of the queue's messages: compatibility check (check) and versions with fingerprints (list).",
  commands: [checkCommand, listCommand],
});
