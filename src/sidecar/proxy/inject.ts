/**
 * How a credential value becomes what leash sends, in one place: the request path injects
 * it (route.ts) and the scrubber looks for exactly these forms in answers (scrub.ts).
 */

/** `format` with `{{credential}}` replaced; a function, so `$&` or `$'` in a value stay literal. */
export function formatted(format: string, value: string): string {
  return format.replace('{{credential}}', () => value);
}

/** The base64 of `username:value` that HTTP Basic carries. */
export function basicToken(username: string, value: string): string {
  return Buffer.from(`${username}:${value}`).toString('base64');
}
