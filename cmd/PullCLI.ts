#!/usr/bin/env node
// PullCLI: see `PullCLI pull --help`; the command is defined in lib/cli/pull-program.ts.
import { main } from '../lib/cli/common.js'
import { pullProgram } from '../lib/cli/programs.js'

await main(pullProgram())
