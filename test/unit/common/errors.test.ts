/** System errors become sentences with the right exit code; CLI option parsing is strict. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { intOption } from "../../../lib/common/cli.ts";
import { asWolfError, describeSystemError, errnoReason, WolfError } from "../../../lib/common/errors.ts";
import { ensureDir, writeFileAtomic } from "../../../lib/common/files.ts";
import { TimeoutError, waitUntil } from "../../../lib/common/wait.ts";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("system errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "wolf-errors-"));
  const file = join(dir, "file");
  writeFileSync(file, "x");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("file errors name the path without Node's syscall jargon", () => {
    const eisdir = thrown(() => readFileSync(dir));
    expect(errnoReason(eisdir)).toBe("it is a directory");
    const eexist = thrown(() => mkdirSync(file, { recursive: true }));
    const e = asWolfError(eexist);
    expect(e.message).toBe(`${file} exists and is not a directory`);
    expect(e.exitCode).toBe(5);
    const enoent = asWolfError(thrown(() => readFileSync(join(dir, "missing"))));
    expect(enoent.message).toBe(`${join(dir, "missing")}: no such file or directory`);
  });

  test("network errors: exit 6 with a hint", () => {
    const inUse = Object.assign(new Error("bind EADDRINUSE 0.0.0.0"), {
      code: "EADDRINUSE",
      syscall: "bind",
      address: "0.0.0.0",
      port: 9600,
    });
    const info = describeSystemError(inUse)!;
    expect(info.message).toBe("0.0.0.0:9600 is already in use");
    expect(info.hint).toContain("change the port");
    expect(asWolfError(inUse).exitCode).toBe(6);
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
      code: "ECONNREFUSED",
      address: "127.0.0.1",
      port: 1,
    });
    expect(asWolfError(refused).message).toBe("connection refused by 127.0.0.1:1");
  });

  test("a bug stays exit 1 and says so; an unknown code from outside is still a failure", () => {
    const bug = asWolfError(new TypeError("x is not a function"));
    expect(bug.exitCode).toBe(1);
    expect(bug.hint).toContain("bug");
    expect(new WolfError("nonsense" as never, "x").exitCode).toBe(1);
  });

  test("a timeout waiting for something outside is not a bug", async () => {
    const err = await waitUntil(() => false, { timeoutMs: 10, what: "nothing" }).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toBeInstanceOf(WolfError);
    expect((err as WolfError).exitCode).toBe(6);
  });

  test("writeFileAtomic names the target (never its temp file) and leaves no temp file; ensureDir names a file in the way", () => {
    const target = join(file, "sub", "x.toml"); // a file is in the way of the directory
    const err = thrown(() => writeFileAtomic(target, "x")) as WolfError;
    expect(err.message).toStartWith(`cannot write ${target}: `);
    expect(err.message).not.toContain(".tmp-");
    const dirErr = thrown(() => ensureDir(file, "the state directory")) as WolfError;
    expect(dirErr.message).toBe(`cannot use ${file} as the state directory: a file with that name is in the way`);
    expect(dirErr.exitCode).toBe(5);
  });
});

describe("intOption", () => {
  test("accepts integers in range, refuses the rest naming the option", () => {
    expect(intOption("--node-id", "7", { min: 1, max: 1023 })).toBe(7);
    expect(intOption("--node-id", undefined)).toBeUndefined();
    for (const bad of ["abc", "1.5", "", " ", "0x10", "5000", "0"]) {
      const err = thrown(() => intOption("--node-id", bad, { min: 1, max: 1023 })) as WolfError;
      expect(err.code).toBe("usage");
      expect(err.message).toBe(`--node-id takes an integer from 1 to 1023, got ${JSON.stringify(bad)}`);
    }
  });
});
