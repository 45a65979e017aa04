/** Settings the unit tests of the settings machinery (config.test.ts, config-file.test.ts) both parse. */
import { parsers, setting } from "../../common/config.js";

/** An integer setting, 1 to 100, default 10. */
export const count = setting({
  flag: "count",
  env: "COUNT",
  default: 10,
  description: "c",
  parse: parsers.int(1, 100),
});

/** A duration setting, up to a minute, default 50 ms. */
export const delay = setting({
  flag: "delay",
  env: "DELAY",
  default: 50,
  description: "d",
  parse: parsers.duration(0, 60_000),
});
