/**
 * A daemon that starts through runDaemon and then throws from a timer (argv[3] = 'exception')
 * or rejects a promise nobody awaits ('rejection'): the last resort of lib/cli/daemon.ts is
 * tested on a real process. argv[2]: the log file.
 */
import { runDaemon } from '../../lib/cli/daemon.js'
import { LogConfig, z } from '../../lib/config/index.js'

const [logFile, mode] = process.argv.slice(2)

await runDaemon(
  {
    name: 'crashing-daemon',
    component: 'crashing-daemon',
    schema: z.strictObject({ log: LogConfig }),
    overrides: () => ({}),
    create: () => {
      let timer: NodeJS.Timeout | undefined
      return {
        start: async () => {
          timer = setTimeout(() => {
            if (mode === 'rejection') void Promise.reject(new Error('boom from a promise'))
            else throw new Error('boom from a timer')
          }, 50)
        },
        stop: async () => clearTimeout(timer),
      }
    },
  },
  { logFile, config: '/dev/null' },
)
