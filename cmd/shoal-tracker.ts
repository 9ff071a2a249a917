#!/usr/bin/env node
// shoal-tracker: see `shoal-tracker --help`; the flags and start-up live in lib/cli/daemons.ts.
import { trackerCommand } from '../lib/cli/daemons.js'

await trackerCommand().parseAsync(process.argv)
