// Time formats of the Kubernetes API, for the operator and the test bed alike.

/** A Time: RFC 3339 in whole seconds. */
export function apiTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A MicroTime: RFC 3339 with exactly six fractional digits. */
export function apiTimeMicro(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
