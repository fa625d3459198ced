import ChainClient
import Foundation
import GridTypes
import Synchronization
import Testing
@testable import Provisioner

/// The provisioner against an in-memory chain and recording managers: verification, admission,
/// updates, chain-driven pause/resume/removal, and convergence after a restart.
@Suite struct ProvisionerFlowTests {
    func error(_ body: () async throws -> Void) async -> ProvisionerError? {
        do { try await body(); return nil } catch let e as ProvisionerError { return e } catch { return .badRequest("\(error)") }
    }

    @Test func aVerifiedDeploymentRunsEveryWorkload() async throws {
        let h = try ProvisionerHarness()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        let hash = try await h.provisioner.deploy(d, caller: h.ownerTwin)
        #expect(hash == DeploymentChallenge.hash(d))
        await h.provisioner.settle()
        #expect(try await h.results(d.contractID) == ["ns1": .ok, "data": .ok])
        #expect(h.zdbs.snapshot[WorkloadID(contractID: d.contractID, name: "ns1")] == false)
        let got = try await h.provisioner.get(contractID: d.contractID, caller: h.ownerTwin)
        if case .zdb(let z) = got.workloads.first(where: { $0.name == "ns1" })?.data { #expect(z.password == "********") }
        let stats = try await h.provisioner.statistics()
        #expect(stats.used == Resources(hru: 1 << 30, sru: 2 << 30))
        // Disks are made before the namespaces and containers that may need them.
        #expect(h.disks.log.first?.hasPrefix("apply") == true)
    }

    @Test func chainChecksRefuseBeforeAnythingRuns() async throws {
        let h = try ProvisionerHarness()
        let base = ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage)

        var wrongHash = try await h.contracted(base)
        wrongHash.workloads[0].description = "edited after the contract"
        DeploymentChallenge.sign(&wrongHash, twinID: h.ownerTwin, keyPair: h.owner)
        let hashError = await error { try await h.provisioner.deploy(wrongHash, caller: h.ownerTwin) }
        #expect(hashError?.description.contains("carries deployment hash") == true)
        #expect(hashError?.httpStatus == 422)

        let otherNode = try await h.contracted(base, node: 4)
        #expect(await error { try await h.provisioner.deploy(otherNode, caller: h.ownerTwin) }?.description.contains("is for node 4; this is node 3") == true)

        let grace = try await h.contracted(base, state: .gracePeriod(since: 5))
        #expect(await error { try await h.provisioner.deploy(grace, caller: h.ownerTwin) }?.description.contains("grace period") == true)

        var missing = base
        missing.contractID = 9999
        DeploymentChallenge.sign(&missing, twinID: h.ownerTwin, keyPair: h.owner)
        #expect(await error { try await h.provisioner.deploy(missing, caller: h.ownerTwin) }?.description.contains("does not exist on chain") == true)

        let unsigned = try await h.contracted(base, sign: false)
        #expect(await error { try await h.provisioner.deploy(unsigned, caller: h.ownerTwin) }?.description.contains("required signer(s) 17 have not signed") == true)

        let stranger = try Ed25519KeyPair.generate()
        var forged = try await h.contracted(base, sign: false)
        DeploymentChallenge.sign(&forged, twinID: h.ownerTwin, keyPair: stranger)
        #expect(await error { try await h.provisioner.deploy(forged, caller: h.ownerTwin) }?.description.contains("does not verify") == true)

        let ok = try await h.contracted(base)
        #expect(await error { try await h.provisioner.deploy(ok, caller: 18) }?.httpStatus == 403)

        h.chain.setUnreachable(true)
        let later = try await h.contracted(base)
        #expect(await error { try await h.provisioner.deploy(later, caller: h.ownerTwin) }?.httpStatus == 503)

        // Nothing of the refused deployments was recorded or started.
        #expect(try await h.store.deployments().isEmpty)
        #expect(h.zdbs.log.isEmpty && h.disks.log.isEmpty)
    }

    @Test func multisigDeploymentWaitsForEverySigner() async throws {
        let h = try ProvisionerHarness()
        let cosigner = try Ed25519KeyPair.generate()
        h.chain.put(Twin(id: 18, publicKey: cosigner.publicKey))
        var d = ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage)
        d.signatureRequirement = SignatureRequirement(requests: [SignatureRequest(twinID: 17, required: true, weight: 1),
                                                                 SignatureRequest(twinID: 18, required: true, weight: 1)], weightRequired: 2)
        d = try await h.contracted(d)
        #expect(await error { try await h.provisioner.deploy(d, caller: h.ownerTwin) }?.description.contains("required signer(s) 18 have not signed") == true)
        DeploymentChallenge.sign(&d, twinID: 18, keyPair: cosigner)
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
    }

    @Test func admissionRefusesWholeDeploymentsThatDoNotFit() async throws {
        let h = try ProvisionerHarness(allocatable: Resources(hru: 1 << 30, sru: 4 << 30, cru: 2, mru: 1 << 30))
        let first = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(first, caller: h.ownerTwin)  // hru 1 GiB, sru 2 GiB

        // Exactly the rest of sru fits...
        let exact = try await h.contracted(ProvisionerHarness.deployment(workloads: [Workload(name: "v", data: .volume(DiskData(size: 2 << 30)))]))
        try await h.provisioner.deploy(exact, caller: h.ownerTwin)
        // ...one volume more does not, and the refusal names the numbers.
        let container = Workload(name: "c", data: .container(ContainerData(image: "file:///i.tar", imageDigest: String(repeating: "a", count: 64),
                                                                          entrypoint: "/bin/sh", compute: .init(cpu: 1, memory: 64 << 20))))
        let over = try await h.contracted(ProvisionerHarness.deployment(workloads: [container, Workload(name: "v", data: .volume(DiskData(size: 16 << 20)))]))
        let refusal = await error { try await h.provisioner.deploy(over, caller: h.ownerTwin) }
        guard case .insufficientCapacity(let resource, let requested, let free, let allocatable)? = refusal else {
            Issue.record("expected a capacity refusal, got \(String(describing: refusal))"); return
        }
        #expect(resource.hasPrefix("sru") && requested == 16 << 20 && free == 0 && allocatable == 4 << 30)
        // Refused whole: the container's CPU and memory, which would have fitted, were not taken either.
        #expect(try await h.provisioner.statistics().used == Resources(hru: 1 << 30, sru: 4 << 30))
        #expect(refusal?.description.contains("needs 16777216, 0 of 4294967296 allocatable is free") == true)
    }

    @Test func nodeConditionsHoldBackNewDeploymentsOnly() async throws {
        let h = try ProvisionerHarness()
        let running = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(running, caller: h.ownerTwin)
        let pressure = Mutex<String?>("MemoryPressure=True: 3% of memory available")
        await h.provisioner.setAdmissionBlocker { pressure.withLock { $0 } }

        let fresh = try await h.contracted(ProvisionerHarness.deployment(workloads: [Workload(name: "v", data: .volume(DiskData(size: 16 << 20)))]))
        let refusal = await error { try await h.provisioner.deploy(fresh, caller: h.ownerTwin) }
        #expect(refusal == .nodeUnderPressure("MemoryPressure=True: 3% of memory available") && refusal?.httpStatus == 503)
        #expect(refusal?.description.contains("running ones keep running") == true)
        #expect(try await h.provisioner.store.deployment(contractID: fresh.contractID) == nil)
        // The deployment already admitted is untouched; once the pressure clears, the same request is admitted.
        #expect(try await waitUntil { try await h.results(running.contractID).values.allSatisfy { $0 == .ok } })
        pressure.withLock { $0 = nil }
        try await h.provisioner.deploy(fresh, caller: h.ownerTwin)
        #expect(try await h.provisioner.store.deployment(contractID: fresh.contractID) != nil)
    }

    @Test func concurrentDeploysNeverOvercommit() async throws {
        let h = try ProvisionerHarness(allocatable: Resources(hru: 0, sru: 10 << 30, cru: 4, mru: 4 << 30))
        var deployments = [Deployment]()
        for _ in 0..<8 {
            deployments.append(try await h.contracted(ProvisionerHarness.deployment(workloads: [Workload(name: "v", data: .volume(DiskData(size: 3 << 30)))])))
        }
        let provisioner = h.provisioner, owner = h.ownerTwin
        let accepted = await withTaskGroup(of: Bool.self) { group in
            for d in deployments { group.addTask { (try? await provisioner.deploy(d, caller: owner)) != nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(accepted == 3)
        #expect(try await h.provisioner.statistics().used.sru == 9 << 30)
    }

    @Test func updatesChangeAddAndRemoveWorkloads() async throws {
        let h = try ProvisionerHarness()
        var d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
        await h.provisioner.settle()

        d.version = 1
        d.workloads.removeAll { $0.name == "ns1" }
        d.workloads.append(Workload(version: 1, name: "ns2", data: .zdb(ZdbData(size: 2 << 30))))
        // Without the contract pointing at the new hash the update is refused.
        var unsignedUpdate = d
        unsignedUpdate.signatureRequirement.signatures = []
        DeploymentChallenge.sign(&unsignedUpdate, twinID: h.ownerTwin, keyPair: h.owner)
        #expect(await error { try await h.provisioner.update(unsignedUpdate, caller: h.ownerTwin) }?.description.contains("carries deployment hash") == true)

        try await h.recontract(&d)
        try await h.provisioner.update(d, caller: h.ownerTwin)
        await h.provisioner.settle()
        #expect(try await h.results(d.contractID) == ["data": .ok, "ns2": .ok])
        #expect(h.zdbs.snapshot.keys.map(\.name).sorted() == ["ns2"])
        #expect(try await h.provisioner.statistics().used == Resources(hru: 2 << 30, sru: 2 << 30))
        let changes = try await h.provisioner.changes(contractID: d.contractID, caller: h.ownerTwin)
        #expect(changes.contains { $0.name == "ns1" && $0.state == "deleted" })

        // A second update with the same version is a version error.
        #expect(await error { try await h.provisioner.update(d, caller: h.ownerTwin) }?.description.contains("must carry version 2") == true)
    }

    @Test func gracePeriodPausesAndCancellationRemovesEverything() async throws {
        let h = try ProvisionerHarness()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
        let runner = Task { await h.provisioner.run() }
        defer { runner.cancel() }
        await h.provisioner.settle()

        var contract = try #require(try await h.chain.contract(id: d.contractID))
        contract.state = .gracePeriod(since: 10)
        try await h.bookApply(.gracePeriodStarted(contract))
        #expect(try await waitUntil { try await h.results(d.contractID) == ["ns1": .paused, "data": .paused] })
        #expect(h.zdbs.snapshot[WorkloadID(contractID: d.contractID, name: "ns1")] == true)

        contract.state = .created
        try await h.bookApply(.gracePeriodEnded(contract))
        #expect(try await waitUntil { try await h.results(d.contractID) == ["ns1": .ok, "data": .ok] })

        try await h.bookApply(.canceled(contractID: d.contractID, cause: .canceledByUser))
        #expect(try await waitUntil { try await h.store.deployment(contractID: d.contractID) == nil })
        #expect(h.zdbs.snapshot.isEmpty && h.disks.snapshot.isEmpty)
        #expect(try await h.provisioner.statistics().used == .zero)
        let changes = try await h.provisioner.changes(contractID: d.contractID, caller: h.ownerTwin)
        #expect(changes.last?.state == "deleted")
    }

    @Test func aChainOutageNeverRemovesADeployment() async throws {
        let h = try ProvisionerHarness()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
        h.chain.setUnreachable(true)
        let runner = Task { await h.provisioner.run() }
        try await Task.sleep(for: .milliseconds(500))
        runner.cancel()
        await runner.value
        #expect(try await h.results(d.contractID) == ["ns1": .ok, "data": .ok])
    }

    @Test func restartRemovesOrphansAndRestoresWhatShouldRun() async throws {
        let h = try ProvisionerHarness()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
        await h.provisioner.settle()
        // While the agent was down: a namespace it made vanished, and one it never recorded exists.
        let ns = WorkloadID(contractID: d.contractID, name: "ns1")
        try await h.zdbs.remove(ns, type: .zdb)
        let orphan = WorkloadID(contractID: 4242, name: "leftover")
        h.zdbs.plant(orphan)
        try h.restart()
        await h.provisioner.start()
        await h.provisioner.settle()
        #expect(Set(h.zdbs.snapshot.keys) == [ns])
        #expect(h.zdbs.log.contains("remove \(orphan)"))
    }

    @Test func workloadFailuresAreReportedAndPermanentOnesNotRetried() async throws {
        let h = try ProvisionerHarness()
        h.disks.setFailure("data", .workload(name: "data", operation: "resize", detail: "cannot shrink", permanent: true))
        h.zdbs.setFailure("ns1", .workload(name: "ns1", operation: "create", detail: "disk busy", permanent: false))
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await h.provisioner.deploy(d, caller: h.ownerTwin)
        await h.provisioner.settle()
        let got = try await h.provisioner.get(contractID: d.contractID, caller: nil)
        #expect(got.workloads.allSatisfy { $0.result?.state == .error }, "\(got.workloads.map { ($0.name, $0.result) })")
        #expect(got.workloads.first { $0.name == "ns1" }?.result?.message.contains("disk busy") == true)
        // The transient failure heals on a later pass; the permanent one is not tried again.
        h.zdbs.setFailure("ns1", nil)
        let diskCalls = h.disks.log.count
        let runner = Task { await h.provisioner.run() }
        defer { runner.cancel() }
        let healed = try await waitUntil(seconds: 30) { try await h.results(d.contractID)["ns1"] == .ok }
        let finalResults = try await h.results(d.contractID)
        #expect(healed, "\(finalResults) \(h.zdbs.log)")
        #expect(h.disks.log.count == diskCalls, "\(h.disks.log)")
    }
}

extension ProvisionerFlowTests {
    @Test func diskWorkloadsUseTheOtherDiskTypeWhenTheirOwnIsMissing() async throws {
        // An HDD-only node still hosts a volume, an SSD-only node a zdb; what was reserved says where.
        let hddOnly = try ProvisionerHarness(allocatable: Resources(hru: 10 << 30, sru: 0, cru: 4, mru: 4 << 30))
        let v = try await hddOnly.contracted(ProvisionerHarness.deployment(workloads: [Workload(name: "v", data: .volume(DiskData(size: 2 << 30)))]))
        try await hddOnly.provisioner.deploy(v, caller: hddOnly.ownerTwin)
        #expect(try await hddOnly.provisioner.statistics().used == Resources(hru: 2 << 30))

        let ssdOnly = try ProvisionerHarness(allocatable: Resources(hru: 0, sru: 10 << 30, cru: 4, mru: 4 << 30))
        let z = try await ssdOnly.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await ssdOnly.provisioner.deploy(z, caller: ssdOnly.ownerTwin)
        #expect(try await ssdOnly.provisioner.statistics().used == Resources(sru: 3 << 30))
        #expect(try await ssdOnly.provisioner.contractReservations() == [ContractResources(contractID: z.contractID, used: Resources(sru: 3 << 30))])
    }
}
