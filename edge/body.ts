// Request bodies: JSON only, bounded both by the declared Content-Length and by the bytes
// actually read (a chunked body declares none).
import { ApiError, badRequest } from "./errors.ts";

export const MAX_BODY_BYTES = 64 * 1024;
const DRAIN_LIMIT = 4 * 1024 * 1024;

const tooLarge = () => new ApiError(413, "payload_too_large", `request body exceeds ${MAX_BODY_BYTES} bytes`);

/** Discards what is still in flight (bounded) rather than cutting the stream: a proxy in front
 * (wrangler dev's among them) breaks the keep-alive connection otherwise. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  let discarded = 0;
  while (discarded < DRAIN_LIMIT) {
    const next = await reader.read().catch(() => ({ done: true as const, value: undefined }));
    if (next.done) return;
    discarded += next.value.byteLength;
  }
  await reader.cancel().catch(() => {});
}

async function readBounded(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    if (req.body) await drain(req.body.getReader());
    throw tooLarge();
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await drain(reader);
      throw tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function isJson(contentType: string | null): boolean {
  return !!contentType && /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(contentType.trim());
}

/** The parsed JSON body, or undefined when there is none. Never echoes the input in errors. */
export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const bytes = await readBounded(req, limit);
  if (bytes.length === 0) return undefined;
  if (!isJson(req.headers.get("content-type"))) {
    throw new ApiError(415, "unsupported_media_type", "request body must be application/json");
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw badRequest("body", "body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest("body", "body is not valid JSON");
  }
}

export async function requireJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const body = await readJson(req, limit);
  if (body === undefined) {
    if (!isJson(req.headers.get("content-type")) && req.headers.get("content-type")) {
      throw new ApiError(415, "unsupported_media_type", "request body must be application/json");
    }
    throw badRequest("body", "a JSON body is required");
  }
  return body;
}
