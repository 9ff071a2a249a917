#!/usr/bin/env node
// RemoveCLI: see `RemoveCLI remove --help`; the command is defined in lib/cli/remove-program.ts.
import { main } from '../lib/cli/common.js'
import { removeProgram } from '../lib/cli/programs.js'

await main(removeProgram())
