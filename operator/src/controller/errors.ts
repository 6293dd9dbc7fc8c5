// How a reconcile ends, and the one place API status codes are read.

/** A reconcile that succeeded; requeueAfterMs asks to look again after a known wait. */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** A failure that retrying cannot fix (until the object changes): logged and counted, no retry. */
export class TerminalError extends Error {
  override name = "TerminalError";
}

/** The HTTP status of a failed API call, when it was one. */
export function apiStatus(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

/** The object does not exist (404). */
export const isNotFound = (error: unknown): boolean => apiStatus(error) === 404;
/** A conflict: an outdated resourceVersion, or the object already exists (409). */
export const isConflict = (error: unknown): boolean => apiStatus(error) === 409;
/** The requested resourceVersion is too old to watch from (410). */
export const isGone = (error: unknown): boolean => apiStatus(error) === 410;
/** The API server refused the object as invalid (422). */
export const isInvalid = (error: unknown): boolean => apiStatus(error) === 422;
/** The caller lacks permission (403). */
export const isForbidden = (error: unknown): boolean => apiStatus(error) === 403;

/** A short description of an error for logs and conditions, with the API server's message. */
export function describeError(error: unknown): string {
  const status = apiStatus(error);
  if (status !== undefined) {
    const body = (error as { body?: unknown }).body;
    let message = "";
    try {
      message = (typeof body === "string" ? JSON.parse(body) : body)?.message ?? "";
    } catch {
      message = String(body ?? "");
    }
    return `API server answered ${status}${message ? `: ${message}` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}
