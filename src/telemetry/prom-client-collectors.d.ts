// prom-client's default collectors, one CommonJS module each, which it ships without
// types; telemetry/prom-collectors.bundled.ts imports them one by one (for the bundle).
declare module 'prom-client/lib/metrics/*' {
  import type { Registry } from 'prom-client';
  const collector: (registry: Registry, config: Record<string, unknown>) => void;
  export default collector;
}
