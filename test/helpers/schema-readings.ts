/**
 * Readings and the bytes Apache Avro Java writes for them: the reference the schema tests (test/unit/schemas.test.ts)
 * compare our codec with.
 */
import type { Reading } from "../../schemas/index.js";

/**
 * Reference values computed independently with Apache Avro Java 1.8.2 (Debian 12 package libavro-java 1.8.2-1,
 * OpenJDK 17): SchemaNormalization.toParsingForm / parsingFingerprint64(new Schema.Parser().parse(...)), the
 * long written as 8 bytes little-endian. Messages were written by Java's
 * org.apache.avro.message.BinaryMessageEncoder and read back by Java's GenericDatumReader.
 */
export const JAVA = {
  v1Fingerprint: "bc2b1fcf13ae91b0",
  v1Canonical:
    '{"name":"telemetry.Reading","type":"record","fields":[{"name":"device_id","type":"string"},' +
    '{"name":"sensor","type":"string"},{"name":"ts","type":"long"},{"name":"value","type":"double"},' +
    '{"name":"unit","type":["null","string"]},{"name":"seq","type":["null","long"]},' +
    '{"name":"gateway_id","type":"string"},{"name":"received_at","type":"long"}]}',
  /** BinaryMessageEncoder's bytes for {@link READING_A}; identical to what our encoder writes. */
  messageA:
    "c301bc2b1fcf13ae91b00c6465762d34321674656d7065726174757265f6f1bc8c806400000000008035400206c2b04302" +
    "feffffffffffff1f0867772d3190f7bc8c8064",
  /** BinaryMessageEncoder's bytes for {@link READING_B}. */
  messageB: "c301bc2b1fcf13ae91b0000668756dfdffffffffffff1f000000000000c0bf00000a67772dc3bc00",
  v2Fingerprint: "36d23d40ee824d5f",
  v2Canonical:
    '{"name":"telemetry.Reading","type":"record","fields":[{"name":"device_id","type":"string"},' +
    '{"name":"sensor","type":"string"},{"name":"ts","type":"long"},{"name":"value","type":"double"},' +
    '{"name":"unit","type":["null","string"]},{"name":"seq","type":["null","long"]},' +
    '{"name":"gateway_id","type":"string"},{"name":"received_at","type":"long"},' +
    '{"name":"quality","type":{"name":"telemetry.Quality","type":"enum","symbols":["good","uncertain","bad"]}},' +
    '{"name":"tags","type":{"type":"map","values":"string"}}]}',
  /**
   * BinaryMessageEncoder's bytes, with reading.v2.avsc, for {@link READING_A2}. Java's BinaryMessageDecoder for
   * reading.v2.avsc, with reading.v1.avsc added, reads {@link JAVA.messageA} as READING_A with quality "good" and
   * tags {}.
   */
  messageA2:
    "c30136d23d40ee824d5f0c6465762d34321674656d7065726174757265f6f1bc8c806400000000008035400206c2b04302" +
    "feffffffffffff1f0867772d3190f7bc8c80640204106669726d776172650a322e312e3008736974650a6e6f72746800",
  /** BinaryMessageEncoder's bytes for ts = -2^53 and seq = 2^63-1: valid Avro, but not representable as numbers. */
  messageBeyondSafeLongs:
    "c301bc2b1fcf13ae91b002640273ffffffffffffff1f000000000000f03f0002feffffffffffffffff01026700",
};

/** A reading with every field set, seq the largest safe integer. */
export const READING_A: Reading = {
  device_id: "dev-42",
  sensor: "temperature",
  ts: 1_718_000_000_123,
  value: 21.5,
  unit: "°C",
  seq: Number.MAX_SAFE_INTEGER,
  gateway_id: "gw-1",
  received_at: 1_718_000_000_456,
};
/** {@link READING_A} with what version 2 adds. */
export const READING_A2: Reading = {
  ...READING_A,
  quality: "uncertain",
  tags: { firmware: "2.1.0", site: "north" },
};
/** A reading at the edges: empty device id, the most negative safe ts, unit and seq null. */
export const READING_B: Reading = {
  device_id: "",
  sensor: "hum",
  ts: Number.MIN_SAFE_INTEGER,
  value: -0.125,
  unit: null,
  seq: null,
  gateway_id: "gw-ü",
  received_at: 0,
};
