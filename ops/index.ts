/** Operators' commands: `check`, `status`, `replay`, `backup`. */
export { backupCommand } from "./backup.js";
export { checkCommand } from "./check.js";
export { replayCommand } from "./replay.js";
export { statusCommand } from "./status.js";
