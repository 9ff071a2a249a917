/**
 * OneX's kinds as the resource API serves them: schemas from ../kinds.ts, the deletion-protection
 * admission (a delete of an object annotated `apps.onex.io/deletion-protection: "true"` answers
 * 403), MinerSet's `/scale` subresource, and the fields a fieldSelector may name (the node half
 * watches `spec.hostName=<its host>`).
 */
import type { KindDefinition, KindRegistry } from '../../apiserver/registry.js'
import type { Resource } from '../../apiserver/types.js'
import { ShoalError } from '../../errors/index.js'
import {
  ANNOTATION_DELETION_PROTECTION,
  ChainKind,
  ChainSpec,
  ChainStatus,
  HostKind,
  HostSpec,
  HostStatus,
  LABEL_MINERSET,
  type Miner,
  MinerKind,
  MinerSetKind,
  MinerSetSpec,
  MinerSetStatus,
  MinerSpec,
  MinerStatus,
  SecretKind,
  SecretSpec,
} from '../kinds.js'

function protectedDelete(obj: Resource): void {
  if (obj.metadata.annotations[ANNOTATION_DELETION_PROTECTION] === 'true')
    throw new ShoalError(
      'FORBIDDEN',
      `${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name} is protected from deletion (annotation ${ANNOTATION_DELETION_PROTECTION}: "true")`,
    )
}

export const ChainDefinition: KindDefinition = {
  ...ChainKind,
  spec: ChainSpec,
  status: ChainStatus,
  admitDelete: protectedDelete,
}

export const MinerSetDefinition: KindDefinition = {
  ...MinerSetKind,
  spec: MinerSetSpec,
  status: MinerSetStatus,
  admitDelete: protectedDelete,
  scale: {
    specReplicasPath: 'spec.replicas',
    statusReplicasPath: 'status.replicas',
    selector: (o) => `${LABEL_MINERSET}=${o.metadata.name}`,
  },
}

const miner = (o: Resource) => o as Miner
export const MinerDefinition: KindDefinition = {
  ...MinerKind,
  spec: MinerSpec,
  status: MinerStatus,
  admitDelete: protectedDelete,
  selectableFields: {
    'spec.hostName': (o) => miner(o).spec.hostName,
    'spec.chainName': (o) => miner(o).spec.chainName,
    'status.phase': (o) => miner(o).status?.phase ?? 'Pending',
  },
}

export const HostDefinition: KindDefinition = { ...HostKind, spec: HostSpec, status: HostStatus }
export const SecretDefinition: KindDefinition = { ...SecretKind, spec: SecretSpec }

export const ONEX_DEFINITIONS = [
  ChainDefinition,
  MinerSetDefinition,
  MinerDefinition,
  HostDefinition,
  SecretDefinition,
]

/** Registers OneX's kinds unless the registry has them already. */
export function registerOnexKinds(registry: KindRegistry): KindRegistry {
  for (const def of ONEX_DEFINITIONS)
    if (!registry.kinds().some((k) => k.group === def.group && k.plural === def.plural))
      registry.register(def)
  return registry
}
