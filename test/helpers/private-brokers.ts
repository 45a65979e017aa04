/** Private brokers and free ports for tests: the one implementation lives in scripts/ (shared with bench/). */
export {
  DEFAULT_HOST,
  freePort,
  type PrivateMosquitto,
  type PrivateMosquittoOptions,
  type PrivateRabbit,
  type PrivateRabbitOptions,
  startPrivateMosquitto,
  startPrivateRabbit,
} from "../../scripts/private-brokers.js";
