/** The integration-test harness: namespaces as hosts, MariaDB instances, running dist/wolf. */
export {
  Host,
  TestNet,
  hasNetnsSupport,
  namespacePids,
  netnsSkipReason,
  sweepStaleNamespaces,
  type AddHostOptions,
  type TestNetOptions,
} from "./netns.ts";
export { NodeProc, clusterNodeArgv, type AppendResult, type Entry } from "./cluster-node.ts";
export { mariadbTemplate, startMariaDB, type MariaDBInstance, type MariaDBOptions, type Row } from "./mariadb.ts";
export { freePort, freePorts, freeUdpPort } from "./ports.ts";
export {
  apiRequest,
  REPO_ROOT,
  WOLF_BIN,
  WolfProcess,
  ensureBuilt,
  runWolf,
  runWolfOnce,
  wolfBinaryStale,
  type RunWolfOptions,
} from "./wolf.ts";
export { wgHex, wgSet, wgSocketPath, wgUapi } from "./wireguard.ts";
export {
  ChildScript,
  HARNESS_ROOT,
  LiveSet,
  execArgv,
  onExitCleanup,
  pidAlive,
  runCleanups,
  runCleanupsAsync,
  runDir,
  sweepStaleRuns,
  terminatePid,
  trackPid,
  untrackPid,
  type ExecOptions,
  type ExecResult,
} from "./procs.ts";
