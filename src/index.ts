/** Library surface: the sidecar for embedding and tests, config parsing and the coded errors. */
export { Sidecar, type SidecarDeps } from './sidecar/sidecar.js';
export { parseConfig } from './config/load.js';
export { sidecarSchema, type SidecarConfig } from './config/sidecar.js';
export * from './core/errors.js';
export { fingerprint } from './core/fingerprint.js';
export { createLogger } from './telemetry/logger.js';
export { createAudit } from './telemetry/audit.js';
