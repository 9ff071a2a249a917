/** The OneX node half: what runs Miners on a host (docs/onex-node.md). */
export * from './agent.js'
export * from './assignment.js'
export * from './config.js'
export { type ImageManifest, PLACEHOLDERS, type PreparedImage, prepareImage, readManifest } from './image.js'
export { NodeRunner, type NodeRunnerDeps } from './runner.js'
export { type UnpackLimits, type UnpackResult, unpackTar } from './tar.js'
