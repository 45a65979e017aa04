/** The reading as it travels on the queue, and the quality levels of schema version 2. */

/** A reading as it travels on the queue; field names are the Avro field names. */
export interface Reading {
  /** Identifier of the device that took the measurement. */
  device_id: string;
  /** Name of the sensor on that device. */
  sensor: string;
  /** Time of measurement, milliseconds since the Unix epoch (UTC); a safe integer (within ±(2^53 - 1)). */
  ts: number;
  /** Measured value. */
  value: number;
  /** Unit of the value, or null when the device did not give one. */
  unit: string | null;
  /** Device-side sequence number (a safe integer), or null when the device does not number its readings. */
  seq: number | null;
  /** Identifier of the gateway that received the reading. */
  gateway_id: string;
  /** Time the gateway received the reading, milliseconds since the Unix epoch (UTC); a safe integer. */
  received_at: number;
  /**
   * The device's own judgement of the value (schema version 2 on). Every decoded reading has it: a version 1
   * message decodes with the schema default, {@link DEFAULT_QUALITY}. Left out when encoding, the default is written.
   */
  quality?: Quality;
  /**
   * Labels the device attached to the reading, e.g. `{ site: "north", firmware: "2.1.0" }` (schema version 2 on).
   * Every decoded reading has it: `{}` for a version 1 message. Left out when encoding, `{}` is written.
   */
  tags?: Readonly<Record<string, string>>;
}

/** The symbols of the `telemetry.Quality` enum (schema version 2 on), in schema order. */
export const QUALITIES = ["good", "uncertain", "bad"] as const;
/** How far a device trusts a value: `good`, `uncertain` (e.g. warming up, out of calibration) or `bad`. */
export type Quality = (typeof QUALITIES)[number];
/** The schema default of `quality`: what a reading that does not say, and every version 1 reading, gets. */
export const DEFAULT_QUALITY: Quality = "good";
