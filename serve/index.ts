export { createApp } from "./app.js";
export { serveCommand } from "./command.js";
export { type RunningServe, SERVE_PORT, type ServeConfig, startServe } from "./serve.js";
