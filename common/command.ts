import { ConfigError, type ConfigOf, helpText, parseConfig, type Spec } from "../common/config.js";

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

/** A command as the CLI sees it, whatever its settings. */
export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  help(): string;
  /** Parses `argv` and `env` (a bad value: one line on stderr, exit code 2), then runs. */
  execute(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number>;
}

export function defineCommand<S extends Spec>(c: Command<S>): Command<S> & CliCommand {
  return {
    ...c,
    help: () => helpText(c.usage, c.summary, c.spec, c.extraHelp),
    async execute(argv, env) {
      let config: ConfigOf<S>;
      try {
        config = parseConfig(c.spec, argv, env);
        const problem = c.check?.(config);
        if (problem) throw new ConfigError(problem);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`telemetry ${c.name}: ${err.message}\n`);
        return 2;
      }
      return c.run(config);
    },
  };
}
