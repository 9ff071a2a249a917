/**
 * Bearer tokens for Shoal's HTTP services: read from files (so Kubernetes Secrets and rotated
 * files work), re-read when a file changes, compared in constant time, never logged.
 */
export { guarded } from './guard.js'
export { AuthConfig, type AuthConfigT, isLoopback, TokenAuth, type TokenAuthOptions } from './tokens.js'
