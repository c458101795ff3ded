/**
 * The README's demo: builds dist/wolf and walks through what works today, using the binary exactly
 * as a user would. Each subsystem adds its own step here as it lands (a local cluster in network
 * namespaces, a mounted drive, a mesh); every step cleans up after itself.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const wolf = join(root, "dist", "wolf");

function title(text: string): void {
  process.stdout.write(`\n=== ${text} ===\n`);
}

function run(args: string[], opts: { allowFail?: boolean } = {}): string {
  process.stdout.write(`$ wolf ${args.join(" ")}\n`);
  const result = spawnSync(wolf, args, { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  process.stdout.write(result.stdout);
  process.stdout.write(result.stderr);
  if (result.status !== 0 && !opts.allowFail) throw new Error(`wolf ${args.join(" ")} exited with ${result.status}`);
  return result.stdout;
}

function main(): void {
  title("build");
  const build = spawnSync(process.execPath, [join(root, "install", "build.ts")], { stdio: "inherit" });
  if (build.status !== 0) process.exit(build.status ?? 1);

  title("wolf --help");
  run(["--version"]);
  run(["--help"]);

  const dir = mkdtempSync(join(tmpdir(), "wolf-demo-"));
  try {
    title("a generated config");
    const file = join(dir, "scale.toml");
    run(["scale", "init", "--config", file, "--node-id", "1"]);
    process.stdout.write(readFileSync(file, "utf8"));
    run(["scale", "validate", "--config", file]);

    title("a typo is caught, with the nearest key");
    const typo = readFileSync(file, "utf8").replace(/^heartbeat_ms/m, "hartbeat_ms");
    writeFileSync(file, typo);
    run(["scale", "validate", "--config", file], { allowFail: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write("\ndemo done\n");
}

main();
