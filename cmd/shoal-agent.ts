#!/usr/bin/env node
// shoal-agent: see `shoal-agent --help`; the flags and start-up live in lib/cli/daemons.ts.
import { main } from '../lib/cli/common.js'
import { agentCommand } from '../lib/cli/daemons.js'

await main(agentCommand())
