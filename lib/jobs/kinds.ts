/**
 * The kinds of distribution jobs on the resource API (docs/jobs.md):
 *
 * - `Distribution` (what an operator creates): one source (a host and path, or an existing tag)
 *   to many targets (a host and a destination folder, optional new name). Its status is the
 *   controller's summary: one line per target and overall conditions.
 * - `DistributionTask` (what a host's agent executes): one push on the source host or one pull on
 *   a target host. The herd's job controller creates them from a Distribution; the agent of
 *   `spec.host` watches its tasks (fieldSelector `spec.host=<its host>`) and writes their status.
 *   One object per task keeps writers apart: the controller writes specs, each agent the status
 *   of its own tasks, so 1,000 targets never fight over one object's resourceVersion.
 *
 * A rerun or a cancel is a spec change of the Distribution (`spec.run`, `spec.cancelled`); the
 * controller turns it into new or cancelled tasks. A task is re-executed when its spec changes
 * (its `spec.attempt` is bumped), so an agent compares `metadata.generation` with the
 * `status.observedGeneration` it wrote.
 */

import type { KindRef, Resource } from '../apiserver/types.js'
import { z } from '../config/index.js'

export const JOBS_GROUP = 'shoal.io'
export const JOBS_VERSION = 'v1'
/** Jobs live in one namespace unless a plan names another. */
export const DEFAULT_JOB_NAMESPACE = 'default'

export const DistributionKind: KindRef = {
  group: JOBS_GROUP,
  version: JOBS_VERSION,
  kind: 'Distribution',
  plural: 'distributions',
}
export const DistributionTaskKind: KindRef = {
  group: JOBS_GROUP,
  version: JOBS_VERSION,
  kind: 'DistributionTask',
  plural: 'distributiontasks',
}

/** A host as agents name themselves (agent config `hostName`, default the OS host name). */
export const HostName = z
  .string()
  .regex(/^[A-Za-z0-9]([A-Za-z0-9._:-]{0,252})$/, 'a host name or address (letters, digits, . _ : -)')

/** An absolute path; the agent checks it against its allowed roots before touching anything. */
export const AbsolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith('/') && !p.includes('\0'), 'must be an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'must not contain a ".." component')

/** A file name to write under (PullCLI's new name): one path component. */
export const FileName = z
  .string()
  .min(1)
  .max(255)
  .refine(
    (n) => !/[/\\\0]/.test(n) && n !== '.' && n !== '..',
    'must be a file name, without "/", "\\" or ".."',
  )

/** A bandwidth class name, as agents configure them (`jobs.bandwidthClasses`). */
export const BandwidthClassName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a class name (letters, digits, . _ -; at most 63)')

export const TaskPhase = z.enum(['Pending', 'Running', 'Succeeded', 'Failed'])
export type TaskPhaseT = z.infer<typeof TaskPhase>

/** The pull options of PullCLI, per job. */
export const TransferOptions = z.strictObject({
  resType: z.enum(['file', 'directory']).default('file'),
  hasFlag: z.boolean().default(false),
  isCover: z.boolean().default(true),
  /**
   * A task not finished this long after it was created fails (its host may be down); a rerun
   * gives it a new deadline. Seconds; 0: no deadline.
   */
  timeoutSeconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(3600),
  /** A stall past this (no progress) fails the transfer, as PullCLI's --timeout. Seconds. */
  stallSeconds: z.number().int().min(1).max(86_400).default(120),
  /**
   * Each target's agent caps its download of the job's bytes from peers to the rate it
   * configures for this class (`jobs.bandwidthClasses`); a target whose agent does not know the
   * class fails, naming the classes it has. Absent: the agents' host caps only. Pushes ignore it.
   */
  bandwidthClass: BandwidthClassName.optional(),
})

export const DistributionSpec = z.strictObject({
  /** Exactly one of: `{host, path}` (the host's agent pushes it first) or `{tag}`. */
  source: z.union([
    z.strictObject({ host: HostName, path: AbsolutePath }),
    z.strictObject({ tag: z.string().min(1).max(4096) }),
  ]),
  targets: z
    .array(
      z.strictObject({
        host: HostName,
        /** The destination folder (PullCLI's --dst-path). */
        path: AbsolutePath,
        /** Write under this name instead of the source's (no '/'). */
        name: FileName.optional(),
      }),
    )
    .min(1)
    .max(10_000),
  options: TransferOptions.prefault({}),
  /** Bumped by `shoal job rerun`; the controller re-creates the tasks `rerun` selects. */
  run: z.number().int().min(1).default(1),
  rerun: z.enum(['failed', 'all']).default('failed'),
  /** Set by `shoal job cancel`: unfinished tasks fail with reason "cancelled". */
  cancelled: z.boolean().default(false),
})
export type DistributionSpecT = z.infer<typeof DistributionSpec>

export const TaskSpec = z.strictObject({
  /** The Distribution this task belongs to (also its owner reference). */
  distribution: z.string().min(1).max(253),
  host: HostName,
  action: z.enum(['push', 'pull']),
  /** push: the file or folder to push. */
  sourcePath: AbsolutePath.optional(),
  /** pull: the tag to pull (push: the tag to push under). */
  tag: z.string().min(1).max(4096),
  /** pull: the destination folder and optional new name. */
  path: AbsolutePath.optional(),
  name: FileName.optional(),
  options: TransferOptions.prefault({}),
  /** Bumped by a rerun; the agent runs the task again when it changes. */
  attempt: z.number().int().min(1).default(1),
  cancelled: z.boolean().default(false),
})
export type TaskSpecT = z.infer<typeof TaskSpec>

export const TaskStatus = z.strictObject({
  phase: TaskPhase,
  /** The task generation this status is about (an agent re-runs when generation is newer). */
  observedGeneration: z.number().int().min(0).default(0),
  attempts: z.number().int().min(0).default(0),
  bytes: z.number().int().min(0).default(0),
  seconds: z.number().min(0).default(0),
  /** Where the bytes came from: the swarm, the CSGW fallback, or already there. */
  source: z.enum(['swarm', 'csgw', 'local']).optional(),
  digest: z.string().max(200).optional(),
  /** The final path written (pull) or the tag pushed (push). */
  path: z.string().max(4096).optional(),
  startedAt: z.string().max(64).optional(),
  finishedAt: z.string().max(64).optional(),
  /** The error code and message of the last failure (ShoalError code: message). */
  lastError: z.string().max(4096).optional(),
})
export type TaskStatusT = z.infer<typeof TaskStatus>

export type DistributionTask = Resource<TaskSpecT, TaskStatusT>

/** One line of a Distribution's status: the push on the source host, or one target's pull. */
export const TargetStatus = z.strictObject({
  host: HostName,
  /** The destination folder (target) or the pushed path (source). */
  path: z.string().max(4096),
  name: z.string().max(255).optional(),
  phase: TaskPhase,
  bytes: z.number().int().min(0).default(0),
  seconds: z.number().min(0).default(0),
  source: z.enum(['swarm', 'csgw', 'local']).optional(),
  attempts: z.number().int().min(0).default(0),
  lastError: z.string().max(4096).optional(),
  /** The DistributionTask doing it (absent while it waits for the push). */
  task: z.string().max(253).optional(),
  /** The final path written (pull), as the agent reported it. */
  written: z.string().max(4096).optional(),
})
export type TargetStatusT = z.infer<typeof TargetStatus>

export const Condition = z.strictObject({
  type: z.enum(['Complete', 'Failed']),
  status: z.enum(['True', 'False']),
  reason: z.string().max(128),
  message: z.string().max(8192).default(''),
  lastTransitionTime: z.string().max(64),
})
export type ConditionT = z.infer<typeof Condition>

/** Written by the herd's job controller only. */
export const DistributionStatus = z.strictObject({
  /** The Distribution generation this status is about. */
  observedGeneration: z.number().int().min(0).default(0),
  /** The `spec.run` the controller has acted on (a rerun is done once this equals spec.run). */
  observedRun: z.number().int().min(0).default(0),
  phase: TaskPhase,
  /** The tag the targets pull (the source tag, or the one the push is made under). */
  tag: z.string().max(4096).optional(),
  /** The push on the source host (source {host, path} only). */
  push: TargetStatus.optional(),
  targets: z.array(TargetStatus).max(10_000).default([]),
  counts: z
    .strictObject({
      total: z.number().int().min(0),
      pending: z.number().int().min(0),
      running: z.number().int().min(0),
      succeeded: z.number().int().min(0),
      failed: z.number().int().min(0),
    })
    .optional(),
  conditions: z.array(Condition).max(8).default([]),
  startedAt: z.string().max(64).optional(),
  finishedAt: z.string().max(64).optional(),
})
export type DistributionStatusT = z.infer<typeof DistributionStatus>

export type Distribution = Resource<DistributionSpecT, DistributionStatusT>

/** Labels and annotations the controller puts on tasks. */
export const LABEL_DISTRIBUTION = 'shoal.io/distribution'
/** ISO time after which an unfinished task fails (set at each (re)creation from timeoutSeconds). */
export const ANNOTATION_DEADLINE = 'shoal.io/deadline'
/** The Distribution `spec.run` at which the task was last (re)started. */
export const ANNOTATION_RUN = 'shoal.io/run'
