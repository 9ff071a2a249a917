#!/usr/bin/env node
// PushCLI: see `PushCLI push --help`; the command is defined in lib/cli/push-program.ts.
import { main } from '../lib/cli/common.js'
import { pushProgram } from '../lib/cli/programs.js'

await main(pushProgram())
