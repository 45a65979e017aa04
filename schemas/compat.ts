/**
 * Backward compatibility of schema versions: can a reader schema read every datum written with a writer schema?
 * Pure functions over parsed `.avsc` JSON values; no file or network access.
 *
 * The rules are the Avro specification's schema resolution, applied statically and strictly (as Apache Avro Java's
 * `SchemaCompatibility` does): every branch of a writer union must be readable, not only the branches some data
 * happens to take. Each problem names the field that breaks, so a failed check says what to fix.
 */
import avro from "avsc";

type AvroSchema = Parameters<typeof avro.Type.forSchema>[0];

/** Writer types each reader type accepts besides its own (Avro specification, "Schema Resolution"). */
const PROMOTIONS: Readonly<Record<string, readonly string[]>> = {
  long: ["int"],
  float: ["int", "long"],
  double: ["int", "long", "float"],
  string: ["bytes"],
  bytes: ["string"],
};

const NAMED = new Set(["record", "error", "enum", "fixed"]);

function isUnion(t: avro.Type): t is avro.types.WrappedUnionType {
  return t.typeName.startsWith("union");
}

/** Short human form of a type for messages: `long`, `enum telemetry.Quality`, `map<string>`, `[null, string]`. */
export function describeType(t: avro.Type): string {
  if (isUnion(t)) return `[${t.types.map(describeType).join(", ")}]`;
  if (t instanceof avro.types.ArrayType) return `array<${describeType(t.itemsType)}>`;
  if (t instanceof avro.types.MapType) return `map<${describeType(t.valuesType as avro.Type)}>`;
  if (NAMED.has(t.typeName)) return `${t.typeName} ${t.name ?? "(anonymous)"}`;
  return t.typeName;
}

/** The reader's own name and aliases match the writer's full name (as avsc, which the processor uses, resolves). */
function sameName(reader: avro.Type, writer: avro.Type): boolean {
  return (
    writer.name === undefined || reader.name === writer.name || (reader.aliases ?? []).includes(writer.name)
  );
}

function where(path: string): string {
  return path === "" ? "the record" : `field \`${path}\``;
}

class Resolution {
  /** Named-type pairs already being compared: a recursive schema is compared once. */
  readonly #seen = new Set<string>();

  /** Problems reading `writer` data as `reader`, at `path` (dotted field names; `[]` array items, `{}` map values). */
  check(reader: avro.Type, writer: avro.Type, path: string): string[] {
    if (isUnion(writer)) {
      // Data may take any branch of the writer's union: each must be readable.
      return writer.types.flatMap((branch) => this.check(reader, branch, path));
    }
    if (isUnion(reader)) {
      // The first reader branch that can read the writer's type is used; there must be one.
      if (reader.types.some((branch) => this.check(branch, writer, path).length === 0)) return [];
      return [
        `${where(path)}: the writer's ${describeType(writer)} matches no branch of the reader's union ${describeType(reader)}`,
      ];
    }
    if (
      reader.typeName === writer.typeName ||
      (reader.typeName === "error" && writer.typeName === "record")
    ) {
      return this.#same(reader, writer, path);
    }
    if (PROMOTIONS[reader.typeName]?.includes(writer.typeName)) return [];
    return [
      `${where(path)}: type changed from ${describeType(writer)} to ${describeType(reader)}, which Avro cannot promote`,
    ];
  }

  #same(reader: avro.Type, writer: avro.Type, path: string): string[] {
    if (NAMED.has(reader.typeName) && !sameName(reader, writer)) {
      return [
        `${where(path)}: ${reader.typeName} ${writer.name} of the writer is named ${reader.name} in the reader, ` +
          `with no alias ${writer.name}`,
      ];
    }
    if (reader instanceof avro.types.RecordType && writer instanceof avro.types.RecordType) {
      const key = `${reader.name}\0${writer.name}`;
      if (this.#seen.has(key)) return [];
      this.#seen.add(key);
      return this.#record(reader, writer, path);
    }
    if (reader instanceof avro.types.EnumType && writer instanceof avro.types.EnumType) {
      const missing = writer.symbols.filter((s) => !reader.symbols.includes(s));
      const fallback = (reader as unknown as { default?: string }).default;
      if (missing.length === 0 || fallback !== undefined) return [];
      return [
        `${where(path)}: enum ${reader.name} lacks the writer's symbol${missing.length > 1 ? "s" : ""} ` +
          `${missing.join(", ")} and has no default symbol to read ${missing.length > 1 ? "them" : "it"} as`,
      ];
    }
    if (reader instanceof avro.types.FixedType && writer instanceof avro.types.FixedType) {
      if (reader.size === writer.size) return [];
      return [
        `${where(path)}: fixed ${reader.name} has size ${writer.size} in the writer but ${reader.size} in the reader`,
      ];
    }
    if (reader instanceof avro.types.ArrayType && writer instanceof avro.types.ArrayType) {
      return this.check(reader.itemsType, writer.itemsType, `${path}[]`);
    }
    if (reader instanceof avro.types.MapType && writer instanceof avro.types.MapType) {
      return this.check(reader.valuesType as avro.Type, writer.valuesType as avro.Type, `${path}{}`);
    }
    return []; // the same primitive
  }

  #record(reader: avro.types.RecordType, writer: avro.types.RecordType, path: string): string[] {
    const problems: string[] = [];
    for (const field of reader.fields) {
      const names = [field.name, ...(field.aliases ?? [])];
      const source = writer.fields.filter((w) => names.includes(w.name));
      const at = path === "" ? field.name : `${path}.${field.name}`;
      if (source.length > 1) {
        problems.push(
          `field \`${at}\`: its name and aliases match several writer fields (${source.map((s) => s.name).join(", ")})`,
        );
      } else if (source[0] === undefined) {
        if (field.defaultValue() === undefined) {
          problems.push(`field \`${at}\` has no default and is missing in the writer`);
        }
      } else {
        problems.push(...this.check(field.type, source[0].type, at));
      }
    }
    return problems;
  }
}

/** Parses a schema as the registry does; throws an Error with avsc's reason when it is not a valid Avro schema. */
function parse(schema: unknown): avro.Type {
  return avro.Type.forSchema(schema as AvroSchema, { wrapUnions: true });
}

/**
 * Why `reader` cannot read data written with `writer` (both parsed `.avsc` JSON): one line per field that breaks,
 * e.g. "field `battery` has no default and is missing in the writer"; empty when every datum of `writer` resolves.
 * avsc's own resolver is consulted too, so anything the processor would refuse is reported even where this
 * analysis has no finer word for it. Throws an Error when either is not a valid Avro schema.
 */
export function incompatibilities(reader: unknown, writer: unknown): string[] {
  const r = parse(reader);
  const w = parse(writer);
  const problems = new Resolution().check(r, w, "");
  if (problems.length > 0) return problems;
  try {
    r.createResolver(w);
  } catch (err) {
    return [`avsc cannot resolve the writer schema to the reader's: ${(err as Error).message}`];
  }
  return [];
}

/** One schema file as read from a folder: its name and parsed JSON. */
export interface SchemaSource {
  readonly file: string;
  readonly schema: unknown;
}

/** A pair of versions that does not resolve: `reader` (newer) cannot read data written with `writer` (older). */
export interface Incompatibility {
  readonly reader: string;
  readonly writer: string;
  readonly problems: readonly string[];
  /** One line per problem: "<reader> cannot read data written with <writer>: <problem>". */
  readonly lines: readonly string[];
}

/** What {@link checkVersions} found: the failing pairs, and how many pairs it checked. */
export interface CompatReport {
  readonly pairs: number;
  readonly failures: readonly Incompatibility[];
}

/**
 * Checks that every version can read data written with every earlier one. `versions` must be ordered oldest
 * first. A file that is not a valid Avro schema is reported as its own failure (with `writer` equal to `reader`).
 */
export function checkVersions(versions: readonly SchemaSource[]): CompatReport {
  const failures: Incompatibility[] = [];
  const fail = (reader: string, writer: string, problems: string[], lines: string[]) =>
    failures.push({ reader, writer, problems, lines });
  const valid = versions.filter((v) => {
    try {
      parse(v.schema);
      return true;
    } catch (err) {
      const problem = `not a valid Avro schema: ${(err as Error).message}`;
      fail(v.file, v.file, [problem], [`${v.file} is ${problem}`]);
      return false;
    }
  });
  let pairs = 0;
  for (const [i, reader] of valid.entries()) {
    for (const writer of valid.slice(0, i)) {
      pairs++;
      const problems = incompatibilities(reader.schema, writer.schema);
      if (problems.length === 0) continue;
      const head = `${reader.file} cannot read data written with ${writer.file}`;
      fail(
        reader.file,
        writer.file,
        problems,
        problems.map((p) => `${head}: ${p}`),
      );
    }
  }
  return { pairs, failures };
}
