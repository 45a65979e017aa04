import { pino } from "pino";

export type Logger = pino.Logger;
export type LogLevel = "debug" | "info" | "warn" | "error";

/** JSON lines on stdout, one logger per service, `service` on every line. */
export function createLogger(service: string, level: LogLevel): Logger {
  return pino({ level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that writes nothing, for components started from tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
