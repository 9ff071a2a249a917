/** Leases and leader election on the resource API (docs/leases.md). */
export { defaultIdentity, LeaderElected, type LeaderElectionOptions } from './elector.js'
export {
  LEASE_NAMESPACE,
  type Lease,
  LeaseDefinition,
  LeaseKind,
  LeaseSpec,
  type LeaseSpecT,
  registerLeaseKind,
} from './kind.js'
