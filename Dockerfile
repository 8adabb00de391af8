# syntax=docker/dockerfile:1
# The leash image: one image for the sidecar, the authority and the admission webhook.
#   docker build -t leash:0.1.0 .
#   docker run --rm -e OPENAI_API_KEY leash:0.1.0                       # sidecar, default config
#   docker run --rm leash:0.1.0 --version
#   docker run --rm -v $PWD/authority.yaml:/etc/leash/authority.yaml:ro leash:0.1.0 authority --config /etc/leash/authority.yaml
#   docker run --rm -v $PWD/injector.yaml:/etc/leash/injector.yaml:ro leash:0.1.0 injector --config /etc/leash/injector.yaml
#   docker run --rm leash:0.1.0 check --config /etc/leash/sidecar.yaml
# In Kubernetes: deploy/ and docs/kubernetes.md.
#
# The steps below (build and pack, then copy the bundle out of the package, then check every
# shipped example) are performed without a Docker engine by test/e2e/image.test.ts, which
# also reads this file: keep the two in step.

# Base image, pinned to an exact Node release on an exact Debian release (not node:20-slim,
# which moves under a rebuild). Pinning by digest as well (node:20.20.2-bookworm-slim@sha256:…)
# is the release pipeline's job: it resolves the digest from the registry at release time
# and passes it with --build-arg NODE_IMAGE=…; no digest is written here because none
# could be verified from the machines this file was written on.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# ---- build: every dependency, compile TypeScript, pack what npm would publish ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json rolldown.config.mjs README.md CHANGELOG.md LICENSE ./
COPY src ./src
COPY examples ./examples
# `npm run build`: tsc (dist/src), then the bundle the ENTRYPOINT runs (dist/leash,
# rolldown.config.mjs: leash and its production dependencies, with their license texts in
# dist/leash/THIRD-PARTY-LICENSES.txt). package.json "files" decides what is published
# (dist/src, dist/leash, examples/*.yaml, README, CHANGELOG, LICENSE); the runtime stage
# takes its files from that package, never from the build tree.
RUN npm run build \
 && npm pack --pack-destination /tmp \
 && mkdir /pkg \
 && tar -xzf /tmp/leash-*.tgz -C /pkg --strip-components=1

# ---- runtime ----
FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/leash/leash
LABEL org.opencontainers.image.title="leash" \
      org.opencontainers.image.description="Credential-rotation sidecar for AI agent fleets: agents call through leash and never hold a real secret" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV NODE_ENV=production
# npm, npx, corepack and yarn are not needed to run leash: removed, so a shell in the
# container cannot fetch and run packages, and scanners do not report their CVEs.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
WORKDIR /app
# From the published package, only what runs: the bundle needs no node_modules (every
# dependency is in it), so the image holds no npm dependency tree to scan or to load code
# from; dist/src (the library entry points for `import 'leash/…'`) is left out.
# package.json: `leash --version` reads it. test/e2e/image.test.ts copies exactly these.
COPY --from=build /pkg/package.json /pkg/LICENSE /pkg/README.md /pkg/CHANGELOG.md ./
COPY --from=build /pkg/dist/leash ./dist/leash
COPY --from=build /pkg/examples ./examples
# The default config: examples/sidecar-image.yaml, whose admin listener is on 0.0.0.0:9090
# so the kubelet's probes reach it (that file says why). Mount your own over it. Files
# copied here are owned by root and read-only to leash: it writes nothing to its filesystem
# (runs with readOnlyRootFilesystem: true).
COPY examples/sidecar-image.yaml /etc/leash/sidecar.yaml
# A numeric uid:gid, not a user name: the kubelet enforces runAsNonRoot only when it can
# see the uid is not 0, and refuses to start a pod whose image names its user
# ("container has runAsNonRoot and image has non-numeric user"). 65532 is the customary
# "nonroot" id (distroless); it has no passwd entry, no home and no shell login, and owns
# no file in the image. leash needs no privilege, capability or writable path.
USER 65532:65532
# 8080: the sidecar's agent-facing proxy (on 127.0.0.1 in the default config);
# 9090: the sidecar's admin listener (/healthz /readyz /status /metrics);
# 8443: the authority's HTTPS API, and the injector's webhook in deploy/.
EXPOSE 8080 9090 8443
# leash handles SIGTERM and SIGINT itself (orderly drain), so node can be PID 1. An
# authority running `kind: exec` credentials whose commands leave orphaned grandchildren
# should run with an init (docker run --init; in a pod, shareProcessNamespace) to reap them.
# --max-semi-space-size=2: V8's young generation stays at ~4 MB instead of growing to 32 MB
# under load, so a sidecar's peak stays within ~12 MB of its idle RSS at 1,000 requests/s
# or at saturation on 10 connections (not ~15-35 MB). 2, not 1: 1 lowers the peak by ~1-2 MB
# for ~4 % more instructions per request (bench/RESULTS.md, "eighth" and "Instructions per
# request by node flags"; docs/operations.md#memory).
ENTRYPOINT ["node", "--max-semi-space-size=2", "/app/dist/leash/cli.js"]
CMD ["sidecar", "--config", "/etc/leash/sidecar.yaml"]
