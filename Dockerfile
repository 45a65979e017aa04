# One image for every `telemetry` command (gateway, processor, simulate, serve, and the operators' status, replay,
# backup, check). Multi-stage: compilers and dev dependencies stay in the build stage; it runs as the user `node`.
FROM node:22-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HTTP_HOST=0.0.0.0
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/schemas ./schemas
COPY package.json ./
# The processor's database lives in /data; a named volume mounted there starts with this ownership.
RUN mkdir -p /data && chown node:node /data
USER node
ENTRYPOINT ["node", "dist/cli/telemetry.js"]
