#!/usr/bin/env node
// shoal: herd, agent, devcluster and demo; see `shoal --help` (lib/cli/shoal.ts).
import { main } from '../lib/cli/common.js'
import { shoalProgram } from '../lib/cli/shoal.js'

await main(shoalProgram())
