export { DRAIN_WINDOW, type SpoolInput, type SpoolInputOptions, startSpoolInput } from "./input.js";
export { type SpoolMetrics, spoolMetrics } from "./metrics.js";
export type { DropReason, FullPolicy, SpoolDepth, SpoolOptions } from "./options.js";
export { spoolSettings } from "./settings.js";
export { SpoolSink } from "./sink.js";
export { type RunningSpool, type SpoolConfig, startSpool } from "./spool.js";
export { SpoolStore } from "./store.js";
