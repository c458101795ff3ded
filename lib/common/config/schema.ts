/**
 * A small typed schema for TOML config files: every key has a type, a default and a doc line.
 * The same schema validates a loaded file (load.ts) and renders the commented file `init` writes
 * (render.ts), so the docs, the defaults and the checks can never drift apart.
 */

/** One value check: returns an error reason, or undefined when the value is fine. */
export type Check<T> = (value: T) => string | undefined;

export interface FieldSpec<T> {
  readonly kind: "field";
  /** Human name of the type, used in error messages ("an integer", "one of a|b"). */
  readonly typeName: string;
  readonly doc: string;
  readonly default: T;
  /** Converts a raw TOML value to T, or returns an error reason. */
  readonly parse: (raw: unknown) => { ok: true; value: T } | { ok: false; reason: string };
  /** TOML text for a value. */
  readonly render: (value: T) => string;
  /** For `init`: a value generated per installation (secrets, node ids) instead of the default. */
  readonly generate?: () => T;
  /** Secret values are never echoed in error messages. */
  readonly secret?: boolean;
  /** The key must be present (no meaningful default; used inside [[tables]]). */
  readonly required?: boolean;
}

export interface SectionSpec<F extends Fields> {
  readonly kind: "section";
  readonly doc: string;
  readonly fields: F;
}

export interface TableArraySpec<F extends Fields> {
  readonly kind: "tables";
  readonly doc: string;
  readonly fields: F;
  /** Written commented-out by `init` so users see the shape of one entry. */
  readonly example?: Partial<InferFields<F>>;
}

// biome-ignore lint/suspicious/noExplicitAny: any spec, whatever value type it parses
export type AnySpec = FieldSpec<any> | SectionSpec<any> | TableArraySpec<any>;
export type Fields = { readonly [key: string]: AnySpec };

export type Infer<S> =
  S extends FieldSpec<infer T>
    ? T
    : S extends SectionSpec<infer F>
      ? InferFields<F>
      : S extends TableArraySpec<infer F>
        ? InferFields<F>[]
        : never;
export type InferFields<F extends Fields> = { -readonly [K in keyof F]: Infer<F[K]> };

/** A whole config file: a named schema (the name is used in messages and file headers). */
export interface ConfigSchema<F extends Fields> {
  readonly name: string;
  readonly title: string;
  readonly fields: F;
  /**
   * Checks across keys (an address inside its subnet, no two peers on one address), run after
   * every key is valid; throws a ConfigError naming file and key. So `validate` rejects what the
   * daemon would, and `init` never writes such a file.
   */
  readonly check?: (config: InferFields<F>, file: string) => void;
}

export function defineSchema<F extends Fields>(
  name: string,
  title: string,
  fields: F,
  opts: { check?: (config: InferFields<F>, file: string) => void } = {},
): ConfigSchema<F> {
  return { name, title, fields, check: opts.check };
}

export function section<F extends Fields>(doc: string, fields: F): SectionSpec<F> {
  return { kind: "section", doc, fields };
}

export function tables<F extends Fields>(doc: string, fields: F, example?: Partial<InferFields<F>>): TableArraySpec<F> {
  return { kind: "tables", doc, fields, example };
}

// ---------------------------------------------------------------------------------------------
// Field constructors

interface FieldOptions<T> {
  check?: Check<T>;
  generate?: () => T;
  secret?: boolean;
  required?: boolean;
}

function field<T>(
  typeName: string,
  doc: string,
  def: T,
  parse: (raw: unknown) => { ok: true; value: T } | { ok: false; reason: string },
  render: (value: T) => string,
  opts?: FieldOptions<T>,
): FieldSpec<T> {
  const checked = (raw: unknown) => {
    const result = parse(raw);
    if (!result.ok || !opts?.check) return result;
    const reason = opts.check(result.value);
    return reason === undefined ? result : { ok: false as const, reason };
  };
  const spec: FieldSpec<T> = {
    kind: "field",
    typeName,
    doc,
    default: def,
    parse: checked,
    render,
    generate: opts?.generate,
    secret: opts?.secret,
    required: opts?.required,
  };
  if (!opts?.required && !opts?.generate) {
    // A default that fails its own check is a programming error: catch it at startup.
    const self = checked(def as unknown);
    if (!self.ok) throw new Error(`schema default ${JSON.stringify(def)} is invalid: ${self.reason}`);
  }
  return spec;
}

const tomlString = (value: string) => JSON.stringify(value);

function describe(raw: unknown): string {
  if (Array.isArray(raw)) return "an array";
  if (raw === null) return "null";
  if (raw instanceof Date) return "a date";
  if (typeof raw === "object") return "a table";
  if (typeof raw === "number" && !Number.isFinite(raw)) return String(raw); // JSON.stringify(NaN) is "null"
  return `${typeof raw} ${JSON.stringify(raw)}`;
}

export function str(
  doc: string,
  def: string,
  opts?: FieldOptions<string> & { pattern?: RegExp; patternHint?: string },
): FieldSpec<string> {
  const pattern = opts?.pattern;
  const check: Check<string> = (value) => {
    if (pattern && !pattern.test(value))
      return `expected ${opts?.patternHint ?? `a string matching ${pattern}`}, got ${JSON.stringify(value)}`;
    return opts?.check?.(value);
  };
  return field(
    "a string",
    doc,
    def,
    (raw) =>
      typeof raw === "string"
        ? { ok: true, value: raw }
        : { ok: false, reason: `expected a string, got ${describe(raw)}` },
    tomlString,
    { ...opts, check },
  );
}

/** A number field with optional bounds; `accept` decides the kind ("an integer": Number.isInteger). */
function numberField(
  typeName: string,
  accept: (n: number) => boolean,
  render: (value: number) => string,
  doc: string,
  def: number,
  opts: (FieldOptions<number> & { min?: number; max?: number }) | undefined,
): FieldSpec<number> {
  const { min, max } = opts ?? {};
  return field(
    typeName,
    doc,
    def,
    (raw) => {
      if (typeof raw !== "number" || !accept(raw))
        return { ok: false, reason: `expected ${typeName}, got ${describe(raw)}` };
      if (min !== undefined && raw < min) return { ok: false, reason: `must be at least ${min}, got ${raw}` };
      if (max !== undefined && raw > max) return { ok: false, reason: `must be at most ${max}, got ${raw}` };
      return { ok: true, value: raw };
    },
    render,
    opts,
  );
}

export function int(
  doc: string,
  def: number,
  opts?: FieldOptions<number> & { min?: number; max?: number },
): FieldSpec<number> {
  return numberField("an integer", Number.isInteger, String, doc, def, opts);
}

export function num(
  doc: string,
  def: number,
  opts?: FieldOptions<number> & { min?: number; max?: number },
): FieldSpec<number> {
  return numberField(
    "a number",
    Number.isFinite,
    (value) => (Number.isInteger(value) ? `${value}.0` : String(value)),
    doc,
    def,
    opts,
  );
}

export function bool(doc: string, def: boolean): FieldSpec<boolean> {
  return field(
    "true or false",
    doc,
    def,
    (raw) =>
      typeof raw === "boolean"
        ? { ok: true, value: raw }
        : { ok: false, reason: `expected true or false, got ${describe(raw)}` },
    (value) => String(value),
  );
}

export function oneOf<const V extends readonly string[]>(doc: string, values: V, def: V[number]): FieldSpec<V[number]> {
  const list = values.join(" | ");
  return field<V[number]>(
    `one of ${list}`,
    `${doc} (${list})`,
    def,
    (raw) =>
      typeof raw === "string" && (values as readonly string[]).includes(raw)
        ? { ok: true, value: raw as V[number] }
        : { ok: false, reason: `expected one of ${list}, got ${describe(raw)}` },
    tomlString,
  );
}

export function strList(doc: string, def: string[], opts?: { item?: Check<string> }): FieldSpec<string[]> {
  return field(
    "an array of strings",
    doc,
    def,
    (raw) => {
      if (!Array.isArray(raw)) return { ok: false, reason: `expected an array of strings, got ${describe(raw)}` };
      for (const [i, item] of raw.entries()) {
        if (typeof item !== "string")
          return { ok: false, reason: `item ${i}: expected a string, got ${describe(item)}` };
        const reason = opts?.item?.(item);
        if (reason) return { ok: false, reason: `item ${i}: ${reason}` };
      }
      return { ok: true, value: raw as string[] };
    },
    (value) => `[${value.map(tomlString).join(", ")}]`,
  );
}

// ---------------------------------------------------------------------------------------------
// Reusable checks

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export const isIPv4 = (value: string) => IPV4.test(value);

export const checkIPv4: Check<string> = (value) =>
  isIPv4(value) ? undefined : `expected an IPv4 address like 10.0.10.1, got ${JSON.stringify(value)}`;

/** "host:port" with an IPv4 address or hostname and a port 1-65535. */
export const checkHostPort: Check<string> = (value) => {
  const match = /^(.+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port >= 1 && port <= 65535) || !(isIPv4(match[1]!) || HOSTNAME.test(match[1]!))) {
    return `expected host:port like 10.0.0.2:7654, got ${JSON.stringify(value)}`;
  }
  return undefined;
};

/** "a.b.c.d/len" */
export const checkCidr: Check<string> = (value) => {
  const [ip, len, extra] = value.split("/");
  const n = Number(len);
  if (extra !== undefined || !ip || !isIPv4(ip) || !Number.isInteger(n) || n < 0 || n > 32) {
    return `expected an IPv4 network like 10.0.10.0/24, got ${JSON.stringify(value)}`;
  }
  return undefined;
};

/** Empty (meaning "derive from data_dir") or an absolute path. */
export const checkOptionalAbsolutePath: Check<string> = (value) =>
  value === "" || value.startsWith("/")
    ? undefined
    : `expected an absolute path (or "" for the default), got ${JSON.stringify(value)}`;

export const checkAbsolutePath: Check<string> = (value) =>
  value.startsWith("/") ? undefined : `expected an absolute path, got ${JSON.stringify(value)}`;
