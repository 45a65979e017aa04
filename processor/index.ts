export { PROCESSOR_HTTP_PORT, processorCommand } from "./command.js";
export { type ProcessorConfig, type RunningProcessor, startProcessor as start } from "./processor.js";
