export { GATEWAY_HTTP_PORT, gatewayCommand } from "./command.js";
export { type GatewayConfig, type RunningGateway, startGateway as start } from "./gateway.js";
