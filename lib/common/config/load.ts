/**
 * Loading and validating a TOML config against its schema. Every problem names the file, the key
 * and the reason; an unknown key names the nearest valid one.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, describeSystemError, errnoName, errnoReason } from "../errors.ts";
import type { AnySpec, ConfigSchema, Fields, InferFields } from "./schema.ts";
import { nearest } from "./suggest.ts";

export function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return Bun.TOML.parse(text) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error & { line?: number; column?: number };
    const where = typeof e.line === "number" ? ` (line ${e.line + 1})` : "";
    const reason = e.message.replace(/^TOML Parse error:\s*/, "");
    throw new ConfigError(`not valid TOML${where}: ${reason}`, { file });
  }
}

const isTable = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** Dotted key names of the whole schema, for suggestions across sections ("port" → "cluster.port"). */
function allKeyPaths(fields: Fields, prefix = ""): string[] {
  const out: string[] = [];
  for (const [key, spec] of Object.entries(fields)) {
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(path);
    if (spec.kind !== "field") out.push(...allKeyPaths(spec.fields, path));
  }
  return out;
}

function unknownKeyError(key: string, path: string, fields: Fields, root: Fields, file: string): ConfigError {
  const here = nearest(key, Object.keys(fields));
  if (here) {
    const suggestion = path.includes(".") ? path.replace(/[^.[\]]+$/, here) : here;
    return new ConfigError(`unknown key "${key}"; did you mean "${suggestion}"?`, { file, key: path });
  }
  const elsewhere = allKeyPaths(root).filter((p) => p.split(".").pop() === key || nearest(key, [p.split(".").pop()!]));
  const hint = elsewhere.length
    ? `; "${elsewhere[0]}" exists in another section`
    : `; valid keys here: ${Object.keys(fields).join(", ")}`;
  return new ConfigError(`unknown key "${key}"${hint}`, { file, key: path });
}

function validateFields(
  raw: Record<string, unknown>,
  fields: Fields,
  root: Fields,
  file: string,
  prefix: string,
): Record<string, unknown> {
  for (const key of Object.keys(raw)) {
    if (!(key in fields)) throw unknownKeyError(key, prefix ? `${prefix}.${key}` : key, fields, root, file);
  }
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(fields) as [string, AnySpec][]) {
    const path = prefix ? `${prefix}.${key}` : key;
    const value = raw[key];
    if (spec.kind === "field") {
      if (value === undefined) {
        if (spec.required) throw new ConfigError(`missing required key "${key}" (${spec.doc})`, { file, key: path });
        // Per-installation values (secrets) have no usable default: a missing one is an error.
        if (spec.generate && !spec.parse(spec.default).ok) {
          throw new ConfigError(`missing key "${key}" (${spec.doc.split("\n")[0]})`, {
            file,
            key: path,
            hint: `\`wolf <subsystem> init\` generates one`,
          });
        }
        out[key] = structuredClone(spec.default);
        continue;
      }
      const result = spec.parse(value);
      if (!result.ok) {
        const reason = spec.secret ? result.reason.replace(/got .*$/, "got a different value") : result.reason;
        throw new ConfigError(reason, { file, key: path });
      }
      out[key] = result.value;
    } else if (spec.kind === "section") {
      if (value !== undefined && !isTable(value))
        throw new ConfigError(`expected a [${path}] table`, { file, key: path });
      out[key] = validateFields((value as Record<string, unknown>) ?? {}, spec.fields, root, file, path);
    } else {
      if (value === undefined) {
        out[key] = [];
        continue;
      }
      if (!Array.isArray(value) || !value.every(isTable))
        throw new ConfigError(`expected [[${path}]] tables`, { file, key: path });
      out[key] = value.map((entry, i) => validateFields(entry, spec.fields, root, file, `${path}[${i}]`));
    }
  }
  return out;
}

/** Validates an already-parsed object (e.g. from tests or an API) against the schema. */
export function validateConfig<F extends Fields>(
  schema: ConfigSchema<F>,
  raw: Record<string, unknown>,
  file = `${schema.name}.toml`,
): InferFields<F> {
  const config = validateFields(raw, schema.fields, schema.fields, file, "") as InferFields<F>;
  schema.check?.(config, file);
  return config;
}

export function parseConfig<F extends Fields>(schema: ConfigSchema<F>, text: string, file: string): InferFields<F> {
  return validateConfig(schema, parseToml(text, file), file);
}

/** The schema's defaults, as a config object. */
export function defaultConfig<F extends Fields>(schema: ConfigSchema<F>): InferFields<F> {
  return validateConfig(schema, {}, "(defaults)");
}

/** Config files are small; a larger "config" is a wrong path (a log, an image, /dev/zero). */
const MAX_CONFIG_BYTES = 1 << 20;

export function loadConfig<F extends Fields>(schema: ConfigSchema<F>, file: string): InferFields<F> {
  return parseConfig(schema, readConfigText(file, schema.name), file);
}

/** The text of a config file, or a ConfigError saying plainly why it cannot be one. */
export function readConfigText(file: string, schemaName: string): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch (err) {
    if (errnoName(err) === "ENOENT") {
      const hint = ["scale", "disk", "net"].includes(schemaName)
        ? `create it with: wolf ${schemaName} init --config ${file}`
        : undefined;
      throw new ConfigError("file not found", { file, hint });
    }
    throw unreadable(file, err);
  }
  if (st.isDirectory()) {
    throw new ConfigError(`is a directory, not a config file`, {
      file,
      hint: `pass the file itself, e.g. --config ${join(file, `${schemaName}.toml`)}`,
    });
  }
  if (!st.isFile())
    throw new ConfigError("is not a regular file (a device, socket or pipe cannot be a config file)", { file });
  if (st.size > MAX_CONFIG_BYTES)
    throw new ConfigError(`is ${st.size} bytes, too large for a config file; is it the right path?`, { file });
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw unreadable(file, err);
  }
}

function unreadable(file: string, err: unknown): ConfigError {
  return new ConfigError(`cannot read: ${errnoReason(err)}`, {
    file,
    hint: describeSystemError(err)?.hint,
    cause: err,
  });
}
