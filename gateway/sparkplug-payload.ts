import protobuf from "protobufjs";

/**
 * The part of the Sparkplug B payload schema (Eclipse Sparkplug 3.0, `sparkplug_b.proto`, package
 * `org.eclipse.tahu.protobuf`) that the gateway reads, as a protobufjs descriptor. Field numbers and wire types are
 * the specification's; what the gateway never looks into (a metric's metadata, DataSet and Template bodies, nested
 * property sets) is declared as `bytes` or left out, which protobuf skips or keeps opaque without decoding it.
 */
const SCHEMA = {
  nested: {
    Payload: {
      fields: {
        timestamp: { type: "uint64", id: 1 },
        metrics: { rule: "repeated", type: "Metric", id: 2 },
        seq: { type: "uint64", id: 3 },
        uuid: { type: "string", id: 4 },
        body: { type: "bytes", id: 5 },
      },
      nested: {
        PropertyValue: {
          oneofs: {
            value: {
              oneof: ["intValue", "longValue", "floatValue", "doubleValue", "booleanValue", "stringValue"],
            },
          },
          fields: {
            type: { type: "uint32", id: 1 },
            isNull: { type: "bool", id: 2 },
            intValue: { type: "uint32", id: 3 },
            longValue: { type: "uint64", id: 4 },
            floatValue: { type: "float", id: 5 },
            doubleValue: { type: "double", id: 6 },
            booleanValue: { type: "bool", id: 7 },
            stringValue: { type: "string", id: 8 },
          },
        },
        PropertySet: {
          fields: {
            keys: { rule: "repeated", type: "string", id: 1 },
            values: { rule: "repeated", type: "PropertyValue", id: 2 },
          },
        },
        Metric: {
          oneofs: {
            value: {
              oneof: [
                "intValue",
                "longValue",
                "floatValue",
                "doubleValue",
                "booleanValue",
                "stringValue",
                "bytesValue",
                "datasetValue",
                "templateValue",
              ],
            },
          },
          fields: {
            name: { type: "string", id: 1 },
            alias: { type: "uint64", id: 2 },
            timestamp: { type: "uint64", id: 3 },
            datatype: { type: "uint32", id: 4 },
            isHistorical: { type: "bool", id: 5 },
            isTransient: { type: "bool", id: 6 },
            isNull: { type: "bool", id: 7 },
            properties: { type: "PropertySet", id: 9 },
            intValue: { type: "uint32", id: 10 },
            longValue: { type: "uint64", id: 11 },
            floatValue: { type: "float", id: 12 },
            doubleValue: { type: "double", id: 13 },
            booleanValue: { type: "bool", id: 14 },
            stringValue: { type: "string", id: 15 },
            bytesValue: { type: "bytes", id: 16 },
            datasetValue: { type: "bytes", id: 17 },
            templateValue: { type: "bytes", id: 18 },
          },
        },
      },
    },
  },
};

const PayloadType = protobuf.Root.fromJSON(SCHEMA).lookupType("Payload");

/** Sparkplug B metric datatypes (specification, "Datatypes") that the gateway names. */
export const DataType = {
  Int8: 1,
  Int16: 2,
  Int32: 3,
  Int64: 4,
  UInt8: 5,
  UInt16: 6,
  UInt32: 7,
  UInt64: 8,
  Float: 9,
  Double: 10,
  Boolean: 11,
  String: 12,
} as const;

/** A uint64 as protobufjs gives it: a number, or a `long` object when the `long` package is installed. */
type U64 = number | { readonly low: number; readonly high: number };

const TWO_32 = 4_294_967_296;

/** One metric as decoded, its value still in the field its datatype chose. */
export interface SparkplugMetric {
  readonly name?: string;
  readonly alias?: U64;
  readonly timestamp?: U64;
  readonly datatype?: number;
  readonly isNull?: boolean;
  readonly properties?: { readonly keys?: string[]; readonly values?: SparkplugPropertyValue[] };
  readonly intValue?: number;
  readonly longValue?: U64;
  readonly floatValue?: number;
  readonly doubleValue?: number;
  readonly booleanValue?: boolean;
  readonly stringValue?: string;
  /** The name of the value field that is set (protobuf oneof), if any. */
  readonly value?: string;
}

export interface SparkplugPropertyValue {
  readonly type?: number;
  readonly stringValue?: string;
}

export interface SparkplugPayload {
  readonly timestamp?: U64;
  readonly metrics: readonly SparkplugMetric[];
  readonly seq?: U64;
}

/** A decoded field that was present on the wire (protobufjs leaves absent ones to the prototype's defaults). */
export function has<T extends object>(o: T, field: keyof T): boolean {
  return Object.hasOwn(o, field);
}

/** A uint64 as a JavaScript number (exact up to 2^53, the nearest double beyond). */
export function u64(v: U64): number {
  return typeof v === "number" ? v : (v.high >>> 0) * TWO_32 + (v.low >>> 0);
}

/** A uint64 read as the signed Int64 it carries (two's complement). */
export function i64(v: U64): number {
  if (typeof v === "number") return v >= 2 ** 63 ? v - 2 ** 64 : v;
  return (v.high | 0) * TWO_32 + (v.low >>> 0);
}

/** Decodes a Sparkplug B payload; throws protobufjs's error for bytes that are not one. */
export function decodeSparkplug(bytes: Uint8Array): SparkplugPayload {
  return PayloadType.decode(bytes) as unknown as SparkplugPayload;
}

/** A metric to encode: a name and/or alias, a datatype, and its value in the field the datatype uses. */
export interface SparkplugMetricOut {
  readonly name?: string;
  readonly alias?: number;
  readonly timestamp?: number;
  readonly datatype: number;
  readonly isNull?: boolean;
  readonly doubleValue?: number;
  readonly booleanValue?: boolean;
  readonly properties?: { readonly keys: string[]; readonly values: { type: number; stringValue: string }[] };
}

/** Encodes a Sparkplug B payload (for the rebirth request, and for the simulator that plays an edge node). */
export function encodeSparkplug(payload: {
  readonly timestamp: number;
  readonly seq?: number;
  readonly metrics: readonly SparkplugMetricOut[];
}): Buffer {
  return Buffer.from(PayloadType.encode(PayloadType.fromObject(payload)).finish());
}

/** The metric a rebirth request sets. */
const REBIRTH_METRIC = "Node Control/Rebirth";

/**
 * The NCMD payload that asks an edge node to publish its births again (specification, "Rebirth Request"): one
 * Boolean metric `Node Control/Rebirth` = true, stamped with `now`.
 */
export function encodeRebirthRequest(now: number): Buffer {
  return encodeSparkplug({
    timestamp: now,
    metrics: [{ name: REBIRTH_METRIC, timestamp: now, datatype: DataType.Boolean, booleanValue: true }],
  });
}
