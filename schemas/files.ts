/** Finding and reading the `reading.v<N>.avsc` and `reading-batch.v<N>.avsc` files of a schema folder. */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The two families of schema files: one reading per message, or a batch of readings per message. */
export type SchemaFamily = "reading" | "reading-batch";

const FILE_PATTERNS: Readonly<Record<SchemaFamily, RegExp>> = {
  reading: /^reading\.v([1-9][0-9]*)\.avsc$/,
  "reading-batch": /^reading-batch\.v([1-9][0-9]*)\.avsc$/,
};
const FILE_PATTERN = FILE_PATTERNS.reading;

/** Folder of this module: `schemas/` when run from source, `dist/schemas/` when run compiled. */
const MODULE_DIR = dirname(fileURLToPath(import.meta.url));

function hasSchemaFiles(dir: string): boolean {
  try {
    return readdirSync(dir).some((name) => FILE_PATTERN.test(name));
  } catch {
    return false; // missing or not a folder
  }
}

/** Where to look without a folder: from source this module sits in <repo>/schemas, compiled in <repo>/dist/schemas. */
const DEFAULT_DIRS = [MODULE_DIR, resolve(MODULE_DIR, "..", "..", "schemas")];

/** One `reading.v<N>.avsc` file of a schema folder, its JSON parsed but not yet checked as a schema. */
export interface SchemaFile {
  /** File name, e.g. `reading.v2.avsc`. */
  readonly file: string;
  /** The `<N>` of the file name. */
  readonly version: number;
  /** Absolute path of the file. */
  readonly path: string;
  /** The parsed JSON. */
  readonly schema: unknown;
}

/**
 * The `reading.v<N>.avsc` (or, for `family` "reading-batch", `reading-batch.v<N>.avsc`) files of `dir`, lowest
 * version first, each parsed as JSON. Without `dir`, the
 * repository's `schemas/` folder (found from this module's location both as TypeScript source and as compiled
 * `dist/schemas/`). Returns the absolute folder too. Throws an Error naming the folder when it cannot be
 * read or holds no schema file, or naming the file when it cannot be read or is not JSON.
 */
export function readSchemaFiles(
  dir?: string,
  family: SchemaFamily = "reading",
): { dir: string; files: SchemaFile[] } {
  if (dir === undefined) {
    const found = DEFAULT_DIRS.find(hasSchemaFiles);
    if (found === undefined) {
      throw new Error(`no reading.v<N>.avsc schema file found in ${DEFAULT_DIRS.join(" or ")}`);
    }
    return readSchemaFiles(found, family);
  }
  const pattern = FILE_PATTERNS[family];
  const folder = resolve(dir);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (err) {
    throw new Error(`cannot read the schema folder ${folder}: ${(err as Error).message}`, { cause: err });
  }
  const found = names
    .map((file) => ({ file, match: pattern.exec(file) }))
    .filter((f): f is { file: string; match: RegExpExecArray } => f.match !== null)
    .map(({ file, match }) => ({ file, version: Number(match[1]) }))
    .sort((a, b) => a.version - b.version);
  // A folder without batch schemas is fine (the processor then reads single-reading messages only).
  if (found.length === 0 && family === "reading") {
    throw new Error(`no reading.v<N>.avsc schema file found in ${folder}`);
  }
  const files = found.map(({ file, version }, i): SchemaFile => {
    const previous = found[i - 1];
    if (previous !== undefined && previous.version === version) {
      throw new Error(`${previous.file} and ${file} are both version ${version}`);
    }
    const path = join(folder, file);
    let schema: unknown;
    try {
      schema = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new Error(`schema ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    return { file, version, path, schema };
  });
  return { dir: folder, files };
}
