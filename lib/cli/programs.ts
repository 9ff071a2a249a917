/**
 * The user-facing CLIs: PushCLI push, PullCLI pull, RemoveCLI remove (one file each; this one
 * keeps the single import the entry points and tests use).
 */
export { pullProgram } from './pull-program.js'
export { pushProgram } from './push-program.js'
export { removeProgram } from './remove-program.js'
