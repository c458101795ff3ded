/**
 * The CLI runner around citty: resolves the sub-command chain, prints help, rejects unknown
 * commands and flags with a suggestion, and turns every error into one line on stderr plus a
 * stable exit code. Subcommand files in cmd/ only declare commands.
 */
import { type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import { asWolfError, NotImplementedError, UsageError, WolfError } from "./errors.ts";
import { colorEnabled } from "./log.ts";
import { nearest } from "./config/suggest.ts";

// biome-ignore lint/suspicious/noExplicitAny: citty commands have differing argument types
type AnyCommand = CommandDef<any>;

async function resolve<T>(value: T | Promise<T> | (() => T) | (() => Promise<T>) | undefined): Promise<T | undefined> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

function aliasesOf(def: ArgsDef[string]): string[] {
  const alias = (def as { alias?: string | string[] }).alias;
  return alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
}

function takesValue(flag: string, args: ArgsDef): boolean {
  const name = flag.replace(/^-{1,2}/, "");
  for (const [key, def] of Object.entries(args)) {
    if (def.type !== "string" && def.type !== "enum") continue;
    if (key === name || aliasesOf(def).includes(name)) return true;
  }
  return false;
}

interface Resolved {
  chain: AnyCommand[];
  names: string[];
  rest: string[];
}

/** Follows positional words through subCommands, like citty does, remembering the chain. */
async function resolveChain(root: AnyCommand, argv: string[]): Promise<Resolved> {
  const chain = [root];
  const names: string[] = [];
  let rest = argv;
  for (;;) {
    const cmd = chain[chain.length - 1]!;
    const subs = await resolve(cmd.subCommands);
    if (!subs || Object.keys(subs).length === 0) return { chain, names, rest };
    const args: ArgsDef = (await resolve(cmd.args)) ?? {};
    let index = -1;
    for (let i = 0; i < rest.length; i++) {
      const word = rest[i]!;
      if (word === "--") break;
      if (word.startsWith("-")) {
        if (!word.includes("=") && takesValue(word, args)) i++;
        continue;
      }
      index = i;
      break;
    }
    if (index < 0) return { chain, names, rest };
    const word = rest[index]!;
    const sub = subs[word];
    if (!sub) {
      const visible = [];
      for (const [name, c] of Object.entries(subs)) {
        const meta = await resolve((await resolve(c))?.meta);
        if (!meta?.hidden) visible.push(name);
      }
      const guess = nearest(word, visible);
      const where = ["wolf", ...names].join(" ");
      throw new UsageError(
        `unknown command "${word}" for "${where}"${guess ? `; did you mean "${guess}"?` : ""}`,
        `available: ${visible.join(", ")}. Run "${where} --help".`,
      );
    }
    chain.push((await resolve(sub))!);
    names.push(word);
    rest = rest.slice(index + 1);
  }
}

const BUILTIN_FLAGS = new Set(["help", "h", "version", "v"]);

/** Rejects flags the leaf command does not declare and extra positional words (citty silently accepts both). */
async function checkFlags(leaf: AnyCommand, rest: string[], names: string[]): Promise<void> {
  const args: ArgsDef = (await resolve(leaf.args)) ?? {};
  const known = new Map<string, ArgsDef[string]>();
  const positionals = Object.entries(args)
    .filter(([, def]) => def.type === "positional")
    .map(([key]) => key);
  for (const [key, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    known.set(key, def);
    for (const alias of aliasesOf(def)) known.set(alias, def);
  }
  const command = `wolf ${names.join(" ")}`;
  let seen = 0;
  const positional = (word: string) => {
    if (++seen <= positionals.length) return;
    const expected =
      positionals.length === 0
        ? "takes no arguments"
        : `takes ${positionals.length} argument${positionals.length > 1 ? "s" : ""} (${positionals.map((p) => p.toUpperCase()).join(" ")})`;
    throw new UsageError(
      `unexpected argument "${word}": "${command}" ${expected}`,
      `run "${command} --help" for the usage; quote a value that contains spaces`,
    );
  };
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i]!;
    if (word === "--") {
      for (const after of rest.slice(i + 1)) positional(after);
      break;
    }
    if (!word.startsWith("-") || word === "-" || /^-\d/.test(word)) {
      positional(word);
      continue;
    }
    const name = word.replace(/^-{1,2}/, "").split("=")[0]!;
    if (BUILTIN_FLAGS.has(name)) continue;
    const def = known.get(name) ?? (name.startsWith("no-") ? known.get(name.slice(3)) : undefined);
    if (!def) {
      const guess = nearest(
        name,
        [...known.keys()].filter((k) => k.length > 1),
      );
      throw new UsageError(
        `unknown option "${word}" for "${command}"${guess ? `; did you mean "--${guess}"?` : ""}`,
        `run "${command} --help" for the options`,
      );
    }
    if (!word.includes("=") && (def.type === "string" || def.type === "enum")) {
      const value = rest[i + 1];
      if (value === undefined)
        throw new UsageError(`option "${word}" needs a value`, `run "${command} --help" for the options`);
      i++;
    }
  }
}

async function usageText(resolved: Resolved): Promise<string> {
  const leaf = resolved.chain[resolved.chain.length - 1]!;
  const parent = resolved.chain.length > 1 ? resolved.chain[resolved.chain.length - 2] : undefined;
  const text = await renderUsage(leaf, parent);
  // citty names a command by its parent only ("ctl scale"); show the full path ("wolf ctl scale").
  if (resolved.names.length < 2) return text;
  const short = resolved.names.slice(-2).join(" ");
  return text.replaceAll(short, ["wolf", ...resolved.names].join(" "));
}

function printError(err: WolfError): void {
  const red = colorEnabled() ? (s: string) => `\x1b[31m${s}\x1b[39m` : (s: string) => s;
  process.stderr.write(`${red("wolf: error:")} ${err.message}\n`);
  if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
  // The original error's stack says where it happened; the wrapper's only where it was wrapped.
  const stack = err.cause instanceof Error && err.cause.stack ? err.cause.stack : err.stack;
  if (process.env.WOLF_DEBUG && stack) process.stderr.write(`${stack}\n`);
}

/** Runs the CLI and returns the exit code (the caller exits; daemons keep running until done). */
export async function runCli(root: AnyCommand, argv: string[], version: string): Promise<number> {
  let command = "wolf";
  try {
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      process.stdout.write(`wolf ${version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
      return 0;
    }
    const resolved = await resolveChain(root, argv);
    command = ["wolf", ...resolved.names].join(" ");
    const leaf = resolved.chain[resolved.chain.length - 1]!;
    const wantsHelp = resolved.rest.some((a) => a === "--help" || a === "-h");
    const hasRun = typeof leaf.run === "function";
    if (wantsHelp || (!hasRun && resolved.rest.filter((a) => !a.startsWith("-")).length === 0)) {
      const text = await usageText(resolved);
      // No verb given: show the help but fail, so scripts notice a missing verb.
      if (wantsHelp) {
        process.stdout.write(`${text}\n`);
        return 0;
      }
      process.stderr.write(`${text}\n`);
      throw new UsageError(`missing command for "wolf ${resolved.names.join(" ")}"`.replace(/ "$/, '"'));
    }
    await checkFlags(leaf, resolved.rest, resolved.names);
    await runCommand(leaf, { rawArgs: resolved.rest });
    return 0;
  } catch (err) {
    const e =
      err instanceof WolfError
        ? err
        : (err as { name?: string }).name === "CLIError"
          ? new UsageError((err as Error).message, `run "${command} --help" for the usage`)
          : asWolfError(err);
    printError(e);
    return e.exitCode;
  }
}

/**
 * Errors thrown outside the command's promise (a socket callback, a timer) would otherwise make
 * Bun print minified source and a crash banner: print one line instead and exit 1 (internal).
 */
export function installCrashHandlers(): void {
  const crash = (err: unknown) => {
    const e = asWolfError(err);
    const internal = e.code === "internal";
    printError(internal ? new WolfError("internal", `internal error: ${e.message}`, { hint: e.hint, cause: err }) : e);
    process.exit(e.exitCode);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
}

/**
 * An integer option, strictly: "abc", "1.5", "" and out-of-range values are usage errors naming
 * the option (Number() would turn them into NaN, 0 or a fraction). Undefined stays undefined.
 */
export function intOption(
  flag: string,
  value: unknown,
  range: { min?: number; max?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const n = Number(text);
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = range;
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    const bounds =
      range.min !== undefined && range.max !== undefined
        ? ` from ${min} to ${max}`
        : range.min !== undefined
          ? ` of at least ${min}`
          : "";
    throw new UsageError(`${flag} takes an integer${bounds}, got ${JSON.stringify(String(value))}`);
  }
  return n;
}

/**
 * A verb the product specifies but that is not built yet: it documents its options in --help and
 * fails clearly (exit 3) instead of pretending to succeed.
 */
export function notBuilt<A extends ArgsDef>(path: string, description: string, issue: string, args?: A): CommandDef<A> {
  const name = path.split(" ").pop()!;
  return {
    meta: { name, description: `${description} [not built yet]` },
    args,
    run() {
      throw new NotImplementedError(`wolf ${path}`, issue);
    },
  };
}
