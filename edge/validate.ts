// A small validator: each check returns the typed value or throws a 400 naming the field.
import { badRequest } from "./errors.ts";

export type Check<T> = (value: unknown, field: string) => T;

const OPTIONAL = Symbol("optional");
type OptionalCheck<T> = Check<T | undefined> & { [OPTIONAL]: true };

export function optional<T>(check: Check<T>): OptionalCheck<T> {
  const f = ((v: unknown, field: string) => (v === undefined ? undefined : check(v, field))) as OptionalCheck<T>;
  f[OPTIONAL] = true;
  return f;
}

export function str(opts: { min?: number; max: number; pattern?: RegExp; patternHint?: string }): Check<string> {
  return (v, field) => {
    if (typeof v !== "string") throw badRequest(field, `${field} must be a string`);
    const len = [...v].length;
    if (len < (opts.min ?? 1)) throw badRequest(field, `${field} must have at least ${opts.min ?? 1} characters`);
    if (len > opts.max) throw badRequest(field, `${field} must have at most ${opts.max} characters`);
    // Control characters have no place in any field the edge stores.
    if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(v)) throw badRequest(field, `${field} contains control characters`);
    if (opts.pattern && !opts.pattern.test(v)) throw badRequest(field, `${field} ${opts.patternHint ?? "is malformed"}`);
    return v;
  };
}

export function oneOf<T extends string>(values: readonly T[]): Check<T> {
  return (v, field) => {
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      throw badRequest(field, `${field} must be one of ${values.join(", ")}`);
    }
    return v as T;
  };
}

export function num(opts: { min: number; max: number; integer?: boolean }): Check<number> {
  return (v, field) => {
    if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(field, `${field} must be a number`);
    if (opts.integer && !Number.isInteger(v)) throw badRequest(field, `${field} must be an integer`);
    if (v < opts.min || v > opts.max) throw badRequest(field, `${field} must be between ${opts.min} and ${opts.max}`);
    return v;
  };
}

export const bool: Check<boolean> = (v, field) => {
  if (typeof v !== "boolean") throw badRequest(field, `${field} must be true or false`);
  return v;
};

export function arr<T>(item: Check<T>, opts: { min?: number; max: number }): Check<T[]> {
  return (v, field) => {
    if (!Array.isArray(v)) throw badRequest(field, `${field} must be an array`);
    if (v.length < (opts.min ?? 0)) throw badRequest(field, `${field} must have at least ${opts.min} items`);
    if (v.length > opts.max) throw badRequest(field, `${field} must have at most ${opts.max} items`);
    return v.map((x, i) => item(x, `${field}[${i}]`));
  };
}

type Shape = Record<string, Check<unknown>>;
type Out<S extends Shape> = { [K in keyof S as S[K] extends OptionalCheck<unknown> ? never : K]: ReturnType<S[K]> } & {
  [K in keyof S as S[K] extends OptionalCheck<unknown> ? K : never]?: Exclude<ReturnType<S[K]>, undefined>;
};

/** Anything; for items checked one by one later. */
export const any: Check<unknown> = (v) => v;

/**
 * An object with these fields. Unknown fields are refused (a clinic's typo is not silently
 * dropped) unless `extra: "ignore"` — for machine reports that may grow new fields.
 */
export function obj<S extends Shape>(shape: S, opts: { extra?: "refuse" | "ignore" } = {}): Check<Out<S>> {
  return (v, field) => {
    const name = field || "body";
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw badRequest(name, `${name} must be an object`);
    const input = v as Record<string, unknown>;
    if (opts.extra !== "ignore") {
      for (const k of Object.keys(input)) {
        if (!Object.hasOwn(shape, k)) {
          // A key is input too: name it only when it looks like a field name (a typo), never
          // echo free text (it could be a patient's name or id used as a key).
          const path = join(field, FIELD_NAME.test(k) ? k : "(unknown field)");
          throw badRequest(path, `${path} is not a known field`);
        }
      }
    }
    const out: Record<string, unknown> = {};
    for (const [k, check] of Object.entries(shape)) {
      const path = join(field, k);
      const value = input[k];
      if (value === undefined && !(OPTIONAL in check)) throw badRequest(path, `${path} is required`);
      const parsed = check(value, path);
      if (parsed !== undefined) out[k] = parsed;
    }
    return out as Out<S>;
  };
}

const FIELD_NAME = /^[A-Za-z_$][A-Za-z0-9_$]{0,39}$/;

function join(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

export function parse<T>(check: Check<T>, value: unknown): T {
  return check(value, "");
}
