/**
 * Errors the API turns into HTTP answers. Their messages are written for the client and must
 * never contain secrets. Anything that is not an ApiError becomes a logged 500 with a generic body.
 */
export interface FieldIssue {
  path: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly details?: FieldIssue[],
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "ApiError";
  }

  toBody(): { error: { type: string; message: string; details?: FieldIssue[] } } {
    return {
      error: { type: this.type, message: this.message, ...(this.details ? { details: this.details } : {}) },
    };
  }
}

/** A value read from Redis that we never write: reported as an error, never silently misread. */
export class CorruptRecordError extends Error {
  constructor(record: string, field: string) {
    super(`stored record ${record} has an invalid '${field}' field`);
    this.name = "CorruptRecordError";
  }
}

export const badRequest = (message: string, details?: FieldIssue[]) =>
  new ApiError(400, "invalid_request_error", message, details);
export const unauthorized = (message: string) => new ApiError(401, "authentication_error", message);
export const notFound = (message: string) => new ApiError(404, "not_found_error", message);
export const conflict = (message: string) => new ApiError(409, "conflict_error", message);
