/**
 * wolf disk on a real mount served by `dist/wolf disk mount`, used by ordinary programs from other
 * processes (never from the daemon): git, tar + diff, cp/rm/cat, dd, mv, ln, stat, setfattr, a
 * 5 GiB sparse file, an fsx-style randomized run, restart persistence and a clean unmount.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  fstatSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ensureBuilt, runWolfOnce } from "../harness/index.ts";
import { type FsxTarget, runFsx } from "../harness/fsx.ts";
import { type MountedDrive, mountDrive, sh } from "./disk-helpers.ts";

const REPO = join(import.meta.dir, "..", "..");
let drive: MountedDrive;

beforeAll(async () => {
  await ensureBuilt();
  drive = await mountDrive();
}, 300_000);

afterAll(async () => {
  await drive?.cleanup();
}, 60_000);

describe("wolf disk mount", () => {
  test("git clone of a local repository, then git fsck", async () => {
    const out = await sh(
      `git clone -q ${REPO} repo && cd repo && git fsck --full 2>&1 && git status --porcelain | wc -l && git log -1 --format=%H`,
      { cwd: drive.mnt, timeoutMs: 120_000 },
    );
    const head = (await sh(`git -C ${REPO} log -1 --format=%H`)).trim();
    expect(out.trim().endsWith(head)).toBe(true);
    expect(out).not.toMatch(/error|missing|corrupt/i);
  }, 150_000);

  test("tar x of a large tree is identical (diff -r)", async () => {
    await sh(
      `tar -C /usr/lib -cf - python3.11 | tar -xf - && diff -r --no-dereference /usr/lib/python3.11 python3.11`,
      { cwd: drive.mnt, timeoutMs: 120_000 },
    );
    const count = await sh(`find python3.11 | wc -l`, { cwd: drive.mnt });
    expect(Number(count)).toBeGreaterThan(1000);
  }, 150_000);

  test("cp a b; rm a; cat b (dedup'd chunks survive) and overwrite in the middle", async () => {
    const out = await sh(
      `head -c 9437184 /dev/urandom > /tmp/wolf-disk-src.$$ && cp /tmp/wolf-disk-src.$$ a && cp a b && rm a && sync && cmp b /tmp/wolf-disk-src.$$ && echo same
       printf 'PATCHED-IN-THE-MIDDLE' | dd of=b bs=1 seek=4194300 conv=notrunc status=none
       printf 'PATCHED-IN-THE-MIDDLE' | dd of=/tmp/wolf-disk-src.$$ bs=1 seek=4194300 conv=notrunc status=none
       cmp b /tmp/wolf-disk-src.$$ && echo patched; dd if=b bs=1 skip=4194300 count=21 status=none; echo; rm -f /tmp/wolf-disk-src.$$`,
      { cwd: drive.mnt },
    );
    expect(out).toBe("same\npatched\nPATCHED-IN-THE-MIDDLE\n");
  });

  test("rename of a non-empty directory keeps its children", async () => {
    const out = await sh(
      `mkdir -p d1/sub/deeper && echo one > d1/sub/deeper/f && echo two > d1/g && mv d1 d2 && cat d2/sub/deeper/f d2/g && ls d1 2>&1 || true; mv d2/sub . && cat sub/deeper/f && stat -c %h .`,
      { cwd: drive.mnt },
    );
    expect(out).toMatch(/^one\ntwo\nls: cannot access 'd1': No such file or directory\none\n\d+\n$/);
  });

  test("symlinks and hard links as ls -l and stat show them", async () => {
    const out = await sh(
      `echo data > target && ln -s target sym && ln target hard && ls -l sym | awk '{print $1, $NF}' && stat -c '%F %h %i' target hard && readlink sym && cat sym`,
      { cwd: drive.mnt },
    );
    const lines = out.trim().split("\n");
    expect(lines[0]).toBe("lrwxrwxrwx target");
    const [t, h] = [lines[1]!.split(" "), lines[2]!.split(" ")];
    expect(t.slice(0, 2)).toEqual(["regular", "file"]);
    expect(t[2]).toBe("2");
    expect(h[3]).toBe(t[3]); // same inode number
    expect(lines.slice(3)).toEqual(["target", "data"]);
  });

  test("xattrs with setfattr/getfattr, chmod/chown/touch -d", async () => {
    const out = await sh(
      `touch x && setfattr -n user.color -v blue x && setfattr -n user.size -v 42 x && getfattr --absolute-names -d x | grep user. | sort && setfattr -x user.size x && getfattr --absolute-names -d x | grep -c user.
       chmod 0640 x && chown 1234:5678 x && touch -d '2001-02-03 04:05:06.123456789 UTC' x && stat -c '%a %u %g %y' x`,
      { cwd: drive.mnt },
    );
    expect(out).toBe('user.color="blue"\nuser.size="42"\n1\n640 1234 5678 2001-02-03 04:05:06.123456789 +0000\n');
  });

  test("cp -a keeps modes, owners and times (POSIX ACLs are refused, not stored as xattrs)", async () => {
    const out = await sh(
      `mkdir -p /tmp/wolf-cpa.$$/d && echo hi > /tmp/wolf-cpa.$$/d/f && chmod 0754 /tmp/wolf-cpa.$$/d/f && chmod 0751 /tmp/wolf-cpa.$$/d
       chown 123:456 /tmp/wolf-cpa.$$/d/f && touch -d '2002-03-04 05:06:07 UTC' /tmp/wolf-cpa.$$/d/f
       cp -a /tmp/wolf-cpa.$$/d cpa && stat -c '%A %a %u %g %Y' cpa cpa/f && ls -l cpa | tail -1 | cut -c1-11; rm -rf /tmp/wolf-cpa.$$`,
      { cwd: drive.mnt },
    );
    const [dir, file, lsMode] = out.split("\n");
    expect(dir).toMatch(/^drwxr-x--x 751 0 0 \d+$/);
    expect(file).toBe("-rwxr-xr-- 754 123 456 1015218367");
    expect(lsMode).toBe("-rwxr-xr-- "); // no "+": no ACL was stored
  });

  test("the kernel enforces modes (default_permissions); an unprivileged write drops set-user-ID", async () => {
    const out = await sh(
      `mkdir -p perm && echo secret > perm/root-only && chmod 0600 perm/root-only && chmod 0755 perm
       (setpriv --reuid=65534 --regid=65534 --clear-groups cat perm/root-only 2>&1 || true) | grep -o 'Permission denied'
       (setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo x > perm/new' 2>&1 || true) | grep -o 'Permission denied'
       test ! -e perm/new
       echo '#!/bin/sh' > perm/tool && chown 65534:65534 perm/tool && chmod 4755 perm/tool && stat -c %a perm/tool
       setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo "# more" >> perm/tool' && stat -c %a perm/tool`,
      { cwd: drive.mnt },
    );
    expect(out).toBe("Permission denied\nPermission denied\n4755\n755\n");
  });

  test("a 5 GiB sparse file", async () => {
    const out = await sh(
      `truncate -s 5G sparse && printf END | dd of=sparse bs=1 seek=5368709117 conv=notrunc status=none && stat -c %s sparse && dd if=sparse bs=1M skip=2500 count=1 status=none | cmp - <(head -c 1048576 /dev/zero) && echo zeros && tail -c 3 sparse && echo && du -k sparse | cut -f1`,
      { cwd: drive.mnt },
    );
    const [size, zeros, end, du] = out.trim().split("\n");
    expect(size).toBe(String(5 * 1024 ** 3));
    expect(zeros).toBe("zeros");
    expect(end).toBe("END");
    expect(Number(du)).toBeLessThan(8 * 1024);
  });

  test("fsx: random writes, truncates, reads, renames and fsyncs through the mount", async () => {
    const dir = join(drive.mnt, "fsx");
    await sh(`mkdir -p ${dir}`);
    const fds = new Map<string, number>();
    const fd = (name: string) => {
      let f = fds.get(name);
      if (f === undefined) {
        f = openSync(join(dir, name), "r+");
        fds.set(name, f);
      }
      return f;
    };
    const closeAll = () => {
      for (const f of fds.values()) closeSync(f);
      fds.clear();
    };
    const target: FsxTarget = {
      create: (name) => void fds.set(name, openSync(join(dir, name), "w+")),
      write(name, off, data) {
        for (let done = 0; done < data.length; )
          done += writeSync(fd(name), data, done, data.length - done, off + done);
      },
      read(name, off, len) {
        const buf = Buffer.alloc(len);
        let got = 0;
        for (;;) {
          const n = readSync(fd(name), buf, got, len - got, off + got);
          if (n === 0) break;
          got += n;
          if (got === len) break;
        }
        return buf.subarray(0, got);
      },
      size: (name) => fstatSync(fd(name)).size,
      truncate: (name, size) => ftruncateSync(fd(name), size),
      rename(from, to) {
        renameSync(join(dir, from), join(dir, to));
        const old = fds.get(to);
        if (old !== undefined) closeSync(old);
        const f = fds.get(from);
        fds.delete(from);
        fds.delete(to);
        if (f !== undefined) fds.set(to, f);
      },
      unlink(name) {
        unlinkSync(join(dir, name));
        const f = fds.get(name);
        if (f !== undefined) closeSync(f);
        fds.delete(name);
      },
      fsync: (name) => fsyncSync(fd(name)),
      reopen: closeAll,
    };
    try {
      const { ops } = await runFsx(target, { seed: 7, ops: 2500, maxSize: 12 * 1024 * 1024, maxLen: 512 * 1024 });
      expect(ops.write).toBeGreaterThan(500);
    } finally {
      closeAll();
    }
  }, 120_000);

  test("everything survives a clean unmount and a new mount, with the same inode numbers", async () => {
    const before = await sh(
      `stat -c '%i %s %h %F' target hard sym sparse b && md5sum b && cd repo && git fsck --full 2>&1 | wc -l`,
      { cwd: drive.mnt },
    );
    const code = await drive.unmount();
    expect(code).toBe(0);
    expect(drive.daemon.output()).toMatch(/is clean/);
    const status = await runWolfOnce(["disk", "status", "-c", drive.config, "--data-dir", drive.dataDir]);
    expect(status.stdout).toMatch(/mount:\s+not mounted/);
    await drive.start();
    const after = await sh(
      `stat -c '%i %s %h %F' target hard sym sparse b && md5sum b && cd repo && git fsck --full 2>&1 | wc -l`,
      { cwd: drive.mnt },
    );
    expect(after).toBe(before);
    expect(existsSync(join(drive.mnt, "python3.11", "os.py"))).toBe(true);
  }, 120_000);
});
