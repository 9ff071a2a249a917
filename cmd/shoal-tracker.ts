#!/usr/bin/env node
// shoal-tracker: see `shoal-tracker --help`; the flags and start-up live in lib/cli/daemons.ts.
import { main } from '../lib/cli/common.js'
import { trackerCommand } from '../lib/cli/daemons.js'

await main(trackerCommand())
