#!/usr/bin/env node
// shoal-build-index: see `shoal-build-index --help`; the flags and start-up live in lib/cli/daemons.ts.
import { main } from '../lib/cli/common.js'
import { buildIndexCommand } from '../lib/cli/daemons.js'

await main(buildIndexCommand())
