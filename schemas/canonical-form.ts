/**
 * The Avro specification's Parsing Canonical Form: the schema text whose CRC-64-AVRO fingerprint names a writer
 * schema on the wire, so it must match what other Avro implementations compute to the byte.
 */
import { isObject } from "./json.js";

const PRIMITIVES = new Set(["null", "boolean", "int", "long", "float", "double", "bytes", "string"]);
const NAMED = new Set(["record", "error", "enum", "fixed"]);

function schemaError(message: string): Error {
  return new Error(`invalid Avro schema: ${message}`);
}

/** Full name of a named type per the specification: a dotted name is already full; else prefix the namespace. */
function fullName(name: string, namespace: string): string {
  return name.includes(".") || namespace === "" ? name : `${namespace}.${name}`;
}

function namespaceOf(full: string): string {
  const dot = full.lastIndexOf(".");
  return dot < 0 ? "" : full.slice(0, dot);
}

/**
 * The Avro specification's Parsing Canonical Form of a schema given as its JSON value (the result of `JSON.parse`
 * of an `.avsc`; a string is a type name, e.g. `"int"`). Applies [PRIMITIVES], [FULLNAMES], [STRIP] (only `type`,
 * `name`, `fields`, `symbols`, `items`, `values`, `size` are kept), [ORDER], [STRINGS], [INTEGERS] and
 * [WHITESPACE]. A logical type reduces to its underlying type (`{"type":"long","logicalType":"timestamp-millis"}`
 * becomes `"long"`) and an `error` is written as a `record`, as Apache Avro Java's `SchemaNormalization` does.
 * Throws an Error for a value that is not a valid schema (including a reference to an undefined named type).
 */
export function canonicalForm(schema: unknown): string {
  return canonical(schema, "", new Set<string>());
}

function canonical(schema: unknown, namespace: string, defined: Set<string>): string {
  if (typeof schema === "string") {
    if (PRIMITIVES.has(schema)) return JSON.stringify(schema);
    return JSON.stringify(resolveReference(schema, namespace, defined));
  }
  if (Array.isArray(schema)) {
    return `[${schema.map((branch) => canonical(branch, namespace, defined)).join(",")}]`;
  }
  if (!isObject(schema)) throw schemaError(`${JSON.stringify(schema)} is not a schema`);
  const type = schema.type;
  if (typeof type !== "string") {
    // {"type": <schema>} is accepted as that schema; Avro's parsers differ here, the canonical form does not.
    if (type === undefined) throw schemaError(`object without "type": ${JSON.stringify(schema)}`);
    return canonical(type, namespace, defined);
  }
  if (PRIMITIVES.has(type)) return JSON.stringify(type); // [PRIMITIVES], and logical types reduce to this
  switch (type) {
    case "array":
      if (schema.items === undefined) throw schemaError('array without "items"');
      return `{"type":"array","items":${canonical(schema.items, namespace, defined)}}`;
    case "map":
      if (schema.values === undefined) throw schemaError('map without "values"');
      return `{"type":"map","values":${canonical(schema.values, namespace, defined)}}`;
  }
  if (!NAMED.has(type)) {
    // {"type": "Name"}: a reference to a named type in object form.
    return JSON.stringify(resolveReference(type, namespace, defined));
  }
  const name = schema.name;
  if (typeof name !== "string" || name === "") throw schemaError(`${type} without a "name"`);
  const ownNamespace = typeof schema.namespace === "string" ? schema.namespace : namespace;
  const full = fullName(name, ownNamespace);
  if (defined.has(full)) throw schemaError(`type ${full} is defined twice`);
  defined.add(full);
  const head = `{"name":${JSON.stringify(full)},"type":`;
  if (type === "enum") {
    const symbols = schema.symbols;
    if (!Array.isArray(symbols) || !symbols.every((s) => typeof s === "string")) {
      throw schemaError(`enum ${full} without a "symbols" array of strings`);
    }
    return `${head}"enum","symbols":[${symbols.map((s) => JSON.stringify(s)).join(",")}]}`;
  }
  if (type === "fixed") {
    const size = schema.size;
    if (typeof size !== "number" || !Number.isInteger(size) || size < 0) {
      throw schemaError(`fixed ${full} without a non-negative integer "size"`);
    }
    return `${head}"fixed","size":${String(size)}}`;
  }
  // record or error: nested names take the namespace of the record's full name.
  const fields = schema.fields;
  if (!Array.isArray(fields)) throw schemaError(`record ${full} without a "fields" array`);
  const inner = namespaceOf(full);
  const parts = fields.map((field: unknown) => {
    if (!isObject(field) || typeof field.name !== "string") {
      throw schemaError(`record ${full} has a field without a "name"`);
    }
    if (field.type === undefined) throw schemaError(`field ${full}.${field.name} without a "type"`);
    return `{"name":${JSON.stringify(field.name)},"type":${canonical(field.type, inner, defined)}}`;
  });
  return `${head}"record","fields":[${parts.join(",")}]}`;
}

function resolveReference(name: string, namespace: string, defined: Set<string>): string {
  const qualified = fullName(name, namespace);
  if (defined.has(qualified)) return qualified;
  if (defined.has(name)) return name; // a short name of the null namespace, as Java resolves it
  throw schemaError(`reference to undefined type ${JSON.stringify(name)}`);
}
