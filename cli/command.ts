import type { ConfigOf, Spec } from "../common/config.js";

/**
 * One `telemetry <name>` subcommand. The CLI parses argv and the environment against `spec` (exit 2 on a bad
 * value, before `run` is called), prints `--help` from it, then calls `run` and exits with the code it returns.
 * Long-running services resolve `run` after SIGINT/SIGTERM has settled their in-flight work.
 */
export interface Command<S extends Spec = Spec> {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly spec: S;
  readonly extraHelp?: string;
  /** Checks across settings (e.g. prefetch >= batch size); return a one-line error to refuse to start. */
  readonly check?: (config: ConfigOf<S>) => string | undefined;
  readonly run: (config: ConfigOf<S>) => Promise<number>;
}

export function defineCommand<S extends Spec>(c: Command<S>): Command<S> {
  return c;
}
