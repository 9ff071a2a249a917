/**
 * The `Lease` kind (group `shoal.io/v1`, as Kubernetes' coordination.k8s.io Lease): one object
 * per piece of work that only one process may do at a time (the herd's job controller, the
 * OneX controllers). Whoever holds it writes its identity and renews it; others take it over
 * once it has not been renewed for `leaseDurationSeconds`, by their own clock (they time how
 * long its resourceVersion stayed the same, so clocks of different hosts need not agree).
 */
import type { KindDefinition, KindRegistry } from '../apiserver/registry.js'
import type { KindRef, Resource } from '../apiserver/types.js'
import { z } from '../config/index.js'

export const LeaseKind: KindRef = { group: 'shoal.io', version: 'v1', kind: 'Lease', plural: 'leases' }

/** Where the herd keeps its leases. */
export const LEASE_NAMESPACE = 'shoal-system'

export const LeaseSpec = z.strictObject({
  /** Who holds it ('' or absent: nobody, released). */
  holderIdentity: z.string().max(253).default(''),
  leaseDurationSeconds: z.number().int().min(1).max(3600),
  /** When the current holder acquired it (ISO time, informative). */
  acquireTime: z.string().max(64).optional(),
  /** When the holder last renewed it (ISO time, informative: takeover uses the observer's clock). */
  renewTime: z.string().max(64).optional(),
  /** How many times it changed hands. */
  leaseTransitions: z.number().int().min(0).default(0),
})
export type LeaseSpecT = z.infer<typeof LeaseSpec>
export type Lease = Resource<LeaseSpecT, never>

export const LeaseDefinition: KindDefinition = {
  ...LeaseKind,
  spec: LeaseSpec,
  selectableFields: { 'spec.holderIdentity': (o) => (o as Lease).spec.holderIdentity },
}

/** Registers the kind unless the registry has it already. */
export function registerLeaseKind(registry: KindRegistry): KindRegistry {
  if (!registry.kinds().some((k) => k.group === LeaseKind.group && k.plural === LeaseKind.plural))
    registry.register(LeaseDefinition)
  return registry
}
