/**
 * The `init` and `validate` verbs every subsystem has, built from its config schema, plus the
 * `--config` / `--data-dir` options every daemon takes. Shared so scale, disk and net behave alike.
 */
import { type ArgsDef, defineCommand } from "citty";
import { UsageError } from "./errors.ts";
import {
  type ConfigSchema,
  defaultConfigPath,
  type Fields,
  generatedValues,
  type InferFields,
  loadConfig,
  parseConfig,
  renderConfig,
  validateConfig,
  writeConfigFile,
} from "./config/index.ts";

export function configArgs(name: string) {
  return {
    config: {
      type: "string",
      alias: "c",
      description: `Config file (default ${defaultConfigPath(name)})`,
      valueHint: "FILE",
    },
  } as const satisfies ArgsDef;
}

export const dataDirArg = {
  "data-dir": { type: "string", description: "State directory (overrides node.data_dir)", valueHint: "DIR" },
} as const satisfies ArgsDef;

/**
 * The file --config names, or the default path. An empty value (`--config "$UNSET"`) is refused
 * rather than silently meaning the default file.
 */
export function configPath(name: string, args: { config?: unknown }): string {
  if (args.config === undefined) return defaultConfigPath(name);
  const file = String(args.config);
  if (file.trim() === "")
    throw new UsageError(
      "--config needs a file path, got an empty string",
      `leave it out to use ${defaultConfigPath(name)}`,
    );
  return file;
}

/** Loads the config named by --config (or the default path) and applies --data-dir. */
export function loadFromArgs<F extends Fields>(
  schema: ConfigSchema<F>,
  args: { config?: string; "data-dir"?: string },
): { file: string; config: InferFields<F> } {
  const file = configPath(schema.name, args);
  const config = loadConfig(schema, file);
  const node = (config as { node?: { data_dir: string } }).node;
  if (args["data-dir"] && node) node.data_dir = args["data-dir"];
  return { file, config };
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const prev = out[key];
    out[key] =
      value &&
      typeof value === "object" &&
      !Array.isArray(value) &&
      prev &&
      typeof prev === "object" &&
      !Array.isArray(prev)
        ? deepMerge(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

/**
 * `wolf <sub> init`: writes the fully commented config with generated secrets.
 * `overrides` maps extra CLI options onto config values (e.g. --address → interface.address).
 */
export function initCommand<F extends Fields, A extends ArgsDef>(
  schema: ConfigSchema<F>,
  opts: {
    args?: A;
    overrides?: (args: Record<string, unknown>) => Record<string, unknown>;
    /** Runs after the file is written (e.g. net writes its key file). */
    after?: (file: string, config: InferFields<F>, args: Record<string, unknown>) => void | Promise<void>;
  } = {},
) {
  return defineCommand({
    meta: { name: "init", description: `Write a commented ${schema.name}.toml with every key and its default` },
    args: {
      ...configArgs(schema.name),
      force: { type: "boolean", description: "Replace an existing config file" },
      ...((opts.args ?? {}) as A),
    },
    async run({ args }) {
      const file = configPath(schema.name, args);
      const values = deepMerge(generatedValues(schema) as Record<string, unknown>, opts.overrides?.(args) ?? {});
      // Check the values first: an option like --node-id abc must be named as a bad value, not
      // show up as a TOML syntax error in a file the user never wrote.
      validateConfig(schema, values, file);
      const text = renderConfig(schema, values as Partial<InferFields<F>>);
      // Validate what we are about to write, so init can never produce a file validate rejects.
      const config = parseConfig(schema, text, file);
      writeConfigFile(file, text, { force: Boolean(args.force), name: schema.name });
      await opts.after?.(file, config, args);
      process.stdout.write(`wrote ${file}\n`);
    },
  });
}

/** `wolf <sub> validate`: loads and checks a config file, reports the first problem precisely. */
export function validateCommand<F extends Fields>(schema: ConfigSchema<F>) {
  return defineCommand({
    meta: { name: "validate", description: `Check ${schema.name}.toml: syntax, unknown keys, values` },
    args: { ...configArgs(schema.name) },
    run({ args }) {
      const { file } = loadFromArgs(schema, args);
      process.stdout.write(`${file}: ok\n`);
    },
  });
}
