/**
 * The job kinds as the resource API serves them: schemas from kinds.ts and the fields a
 * fieldSelector may name (an agent watches `spec.host=<its host>`; the CLI and the controller
 * select a job's tasks by `spec.distribution`).
 */
import type { KindDefinition, KindRegistry } from '../apiserver/registry.js'
import type { Resource } from '../apiserver/types.js'
import { registerLeaseKind } from '../lease/kind.js'
import {
  type Distribution,
  DistributionKind,
  DistributionSpec,
  DistributionStatus,
  type DistributionTask,
  DistributionTaskKind,
  TaskSpec,
  TaskStatus,
} from './kinds.js'

const task = (o: Resource) => o as DistributionTask
const dist = (o: Resource) => o as Distribution

export const DistributionDefinition: KindDefinition = {
  ...DistributionKind,
  spec: DistributionSpec,
  status: DistributionStatus,
  selectableFields: {
    'status.phase': (o) => dist(o).status?.phase,
    'spec.cancelled': (o) => String(dist(o).spec.cancelled === true),
  },
}

export const DistributionTaskDefinition: KindDefinition = {
  ...DistributionTaskKind,
  spec: TaskSpec,
  status: TaskStatus,
  selectableFields: {
    'spec.host': (o) => task(o).spec.host,
    'spec.distribution': (o) => task(o).spec.distribution,
    'spec.action': (o) => task(o).spec.action,
    'status.phase': (o) => task(o).status?.phase ?? 'Pending',
  },
}

/**
 * Registers both kinds, and the Lease the job controller is elected on, unless the registry
 * has them already (a caller's own registry).
 */
export function registerJobKinds(registry: KindRegistry): KindRegistry {
  const has = (plural: string) =>
    registry.kinds().some((k) => k.group === DistributionKind.group && k.plural === plural)
  if (!has(DistributionKind.plural)) registry.register(DistributionDefinition)
  if (!has(DistributionTaskKind.plural)) registry.register(DistributionTaskDefinition)
  return registerLeaseKind(registry)
}
