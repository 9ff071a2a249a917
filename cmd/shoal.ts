#!/usr/bin/env node
// shoal: herd, agent, devcluster and demo; see `shoal --help` (lib/cli/shoal.ts).
import { runCli } from '../lib/cli/common.js'
import { shoalProgram } from '../lib/cli/shoal.js'

const code = await runCli(shoalProgram(), process.argv)
if (code !== 0) process.exitCode = code
