/** Distribution jobs on the agent's side (docs/jobs-agent.md): the task worker and its config. */
export { JobsConfig, type JobsConfigT } from './config.js'
export { executeTask, type TaskOutcome } from './execute.js'
export { isInside, ROOTS_KEY, realDestination, realSource } from './roots.js'
export { TaskWorker, type TaskWorkerOptions } from './worker.js'
