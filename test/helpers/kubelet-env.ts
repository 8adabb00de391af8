/**
 * What the kubelet does to a container's `env` before the process sees it (there is no
 * kubelet on these machines): each `value` goes through Kubernetes' variable expansion
 * (kubernetes/kubernetes third_party/forked/golang/expansion/expand.go, applied in the
 * kubelet's makeEnvironmentVariables), with the variables defined before it in the same
 * container as context. Its rules, written out here:
 *
 * - `$(NAME)` becomes NAME's value when NAME is defined earlier (else it stays `$(NAME)`);
 * - `$$` becomes `$` — anywhere, whatever follows (the escape for `$(`);
 * - `$` followed by anything else, `$(` with no `)`, and a trailing `$` stay as they are.
 *
 * `fieldRef` values are given by the caller (`fields`: e.g. metadata.name).
 */
export function expandKubelet(input: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      i += 1;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i += 2;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close === -1) {
        out += '$(';
        i += 2;
      } else {
        const name = input.slice(i + 2, close);
        out += vars.get(name) ?? `$(${name})`;
        i = close + 1;
      }
    } else {
      out += `$${next}`;
      i += 2;
    }
  }
  return out;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

/** A container's environment as its process gets it: `env` in order, each value expanded against those before it. */
export function containerEnv(env: readonly EnvVar[], fields: Readonly<Record<string, string>>): Record<string, string> {
  const vars = new Map<string, string>();
  for (const e of env) {
    if (e.valueFrom?.fieldRef) {
      const v = fields[e.valueFrom.fieldRef.fieldPath];
      if (v === undefined) throw new Error(`no value given for fieldRef ${e.valueFrom.fieldRef.fieldPath}`);
      vars.set(e.name, v);
    } else if (e.value !== undefined) {
      vars.set(e.name, e.value === '' ? '' : expandKubelet(e.value, vars));
    }
  }
  return Object.fromEntries(vars);
}
