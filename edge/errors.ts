// The edge's one error shape: {"error": {"code", "message", "field"?}} with an HTTP status.
// Messages are written here, never copied from input, so no PHI or secret can echo back.
import type { ContentfulStatusCode } from "hono/utils/http-status";

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toJSON() {
    return { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } };
  }
}

export const badRequest = (field: string, message: string) => new ApiError(400, "invalid_request", message, field);
export const unauthorized = (message = "missing or invalid credentials") =>
  new ApiError(401, "unauthorized", message, undefined, { "www-authenticate": "Bearer" });
export const forbidden = (code: string, message: string) => new ApiError(403, code, message);
export const notFound = (what: string) => new ApiError(404, "not_found", `${what} not found`);
export const conflict = (code: string, message: string) => new ApiError(409, code, message);
export const tooManyRequests = (retryAfterSec: number) =>
  new ApiError(429, "rate_limited", "too many requests; retry later", undefined, { "retry-after": String(retryAfterSec) });
export const unavailable = (code: string, message: string) => new ApiError(503, code, message);
