/// The one source of "used" capacity: the sum of admitted workloads' reservations. The provisioner
/// implements it; the capacity reporter, status and admission read the same numbers.
public protocol ReservationSource: Sendable {
    func reservedCapacity() async -> Resources
    func contractReservations() async -> [ContractResources]
}
