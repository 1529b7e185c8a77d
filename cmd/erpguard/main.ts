#!/usr/bin/env node
/** Entry point of `erpguard` and `kubectl-erpguard`: wires real I/O and the cluster client into the CLI. */
import { clusterCommands, POLICY_COMMANDS, runCli } from '../../pkg/cli/main.js';
import { CliCluster } from '../../pkg/kube/cli-cluster.js';
import { runDemo } from './demo.js';

const commands = {
  ...POLICY_COMMANDS,
  ...clusterCommands((connection) => new CliCluster(connection)),
  demo: {
    summary: 'Run the whole system on this machine with sample ERP modules (no cluster)',
    usage: `erpguard demo [--keep-running] [--dir DIR]

Starts, on 127.0.0.1: the controller in local mode (policies from a watched copy of
examples/policies, the CA, the gRPC identity and policy service), the sample modules finance,
crm, wms and bi each behind its own sidecar, and runs a scripted scenario of real calls. State,
audit logs and the CA live in DIR (default .erpguard/demo). Exit 0 only if every step behaved
as expected. --keep-running leaves everything up afterwards.`,
    run: runDemo,
  },
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
