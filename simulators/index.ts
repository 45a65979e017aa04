export { formatProgress, formatSummary, type SimulateCommandConfig, simulateCommand } from "./command.js";
