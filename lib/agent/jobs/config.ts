/**
 * The agent's part in distribution jobs (docs/jobs-agent.md): where the resource API is, the token it
 * writes task status with, and the folders tasks may touch. Without `apiserver` the agent runs
 * no task worker at all: no connection, no timer.
 */

import { ByteSize } from '../../bandwidth/config.js'
import { FlagConfigSchema } from '../../cli/client-config.js'
import { z } from '../../config/index.js'
import { AbsolutePath, BandwidthClassName } from '../../jobs/kinds.js'

export const JobsConfig = z
  .strictObject({
    /**
     * The herd's resource API, host:port or URL (the herd serves it on basePort + 6, 15006).
     * Unset: jobs are off on this agent.
     */
    apiserver: z.string().min(1).optional(),
    /** A file holding this agent's bearer token (one of the apiserver's `auth.tokens`). */
    tokenFile: z.string().min(1).optional(),
    /**
     * Absolute folders tasks may write into (pulls) and read from (pushes), symlinks resolved.
     * None (the default): every task fails, naming this key; an agent never writes where its
     * operator did not say it may.
     */
    roots: z.array(AbsolutePath).max(256).default([]),
    /** The proxy a push task uploads through (PushCLI's --dst-host; the herd's proxy port). */
    proxy: z.string().min(1).default('127.0.0.1:15000'),
    /** A CSGW, ftp[s]://host[:port]/dir, a pull falls back to when the swarm cannot serve (PullCLI's --csgw). */
    csgw: z.string().min(1).optional(),
    /** The flag file a pull with `hasFlag` writes beside the file, as PullCLI's `flag` settings. */
    flag: FlagConfigSchema,
    /**
     * Named ingress caps a job picks with `options.bandwidthClass` (e.g. `{ bulk: "20MiB",
     * urgent: 0 }`): a pull of that class downloads from peers at most this fast, bytes/s in the
     * units of the `bandwidth` section; 0 = unlimited. The host's `bandwidth.ingressBytesPerSec`
     * still applies on top. A job naming a class not listed here fails on this host.
     */
    bandwidthClasses: z.record(BandwidthClassName, ByteSize).default({}),
    /** Tasks run at once; more wait their turn (Pending). */
    concurrency: z.number().int().min(1).max(64).default(2),
    /**
     * A task watch that hears nothing (no event, no BOOKMARK) this long is dropped and resumed:
     * the connection died silently. Keep it above the apiserver's watch.heartbeatMs (15 s).
     * Seconds.
     */
    watchSilenceSeconds: z.number().int().min(5).max(3600).default(60),
    /** A running task's bytes are written to its status at most this often. Seconds. */
    progressSeconds: z.number().int().min(1).max(600).default(5),
  })
  .prefault({})

export type JobsConfigT = z.infer<typeof JobsConfig>
