#!/usr/bin/env node
/** Entry point of `erpguard` and `kubectl-erpguard`: wires real I/O and the cluster client into the CLI. */
import { clusterCommands, POLICY_COMMANDS, runCli } from '../../pkg/cli/main.js';
import { CliCluster } from '../../pkg/kube/cli-cluster.js';

const commands = {
  ...POLICY_COMMANDS,
  ...clusterCommands((connection) => new CliCluster(connection)),
};

const code = await runCli(
  process.argv.slice(2),
  {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    now: () => new Date(),
    env: process.env,
  },
  commands,
);
process.exitCode = code;
