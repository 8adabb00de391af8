import { Gauge, type Registry } from 'prom-client';

/**
 * An unlabelled gauge that has no sample at all while it has no value. prom-client writes
 * an unlabelled gauge it was never given a value for (or that `collect()` reset) as `0`,
 * and a `0` is a reading: `leash_identity_ttl_remaining_seconds 0` on a sidecar without an
 * authority fired LeashIdentityNearExpiry (`< 600`), `leash_revocation_channel_up 0` on one
 * without `revocations:` fired LeashRevocationChannelDown (`== 0`). Absent, the `# HELP` and
 * `# TYPE` lines stay (the metric exists; promtool accepts it) and no alert reads a value.
 *
 * The value is `read()` at scrape time when given, else the last `update()`.
 */
export class OptionalGauge extends Gauge {
  private current: number | undefined;
  private readonly read: (() => number | undefined) | undefined;

  constructor(o: { name: string; help: string; registers: Registry[]; read?: () => number | undefined }) {
    super({ name: o.name, help: o.help, registers: o.registers });
    this.read = o.read;
  }

  /** A number, or undefined for no sample. */
  update(value: number | undefined): void {
    this.current = value;
  }

  override async get(): ReturnType<Gauge['get']> {
    if (this.read) this.current = this.read();
    const metric = await super.get();
    const v = this.current;
    return { ...metric, values: v === undefined ? [] : [{ value: v, labels: {} }] };
  }
}
