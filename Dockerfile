# syntax=docker/dockerfile:1
# leash sidecar image. Build: docker build -t leash .
# Run:   docker run --rm -v $PWD/sidecar.yaml:/etc/leash/sidecar.yaml:ro -e OPENAI_API_KEY leash
# Other commands: docker run --rm leash check --config /etc/leash/sidecar.yaml

# ---- build: full dependencies, compile TypeScript ----
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and the compiled output only ----
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
# A default config (routes read OPENAI_API_KEY / ANTHROPIC_API_KEY); mount your own over it.
COPY examples/sidecar.yaml /etc/leash/sidecar.yaml
# The image's own unprivileged user (uid 1000); leash needs no privileges.
USER node
# 8080: agent-facing proxy, 9090: admin (/healthz /readyz /status /metrics).
# The default config listens on 127.0.0.1: right for a pod, where the agent shares the
# sidecar's loopback; to publish the ports from a standalone container, set listen/admin
# to 0.0.0.0 in your config (anyone reaching 8080 then uses the credentials).
EXPOSE 8080 9090
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["sidecar", "--config", "/etc/leash/sidecar.yaml"]
