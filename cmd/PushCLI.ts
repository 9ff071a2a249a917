#!/usr/bin/env node
// PushCLI: see `PushCLI push --help`; the command is defined in lib/cli/programs.ts.
import { runCli } from '../lib/cli/common.js'
import { pushProgram } from '../lib/cli/programs.js'

process.exitCode = await runCli(pushProgram(), process.argv)
