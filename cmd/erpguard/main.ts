#!/usr/bin/env node
/** Entry point of `erpguard` and `kubectl-erpguard`: wires real I/O into the CLI. */
import { runCli } from '../../pkg/cli/main.js';

const code = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  now: () => new Date(),
  env: process.env,
});
process.exitCode = code;
