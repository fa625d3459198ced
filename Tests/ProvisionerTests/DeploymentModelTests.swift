import Foundation
import GridTypes
import Testing

/// The challenge, hash and signing against the grid's published vectors, and the model's rules.
@Suite struct DeploymentModelTests {
    @Test func storageVectorMatchesChallengeAndHash() throws {
        let d = try fixture("storage-deployment.json")
        #expect(DeploymentChallenge.text(d) == """
            017{"type":"storage","name":"album"}three shard namespaces and a volume00ns1zdb10737418240seqs3cretfalse0ns_userzdbmuser keys1073741824usertrue0datavolume21474836480disk0zmount536870912017true11
            """)
        #expect(DeploymentChallenge.hash(d) == "4e4d2e444d250e2dae5dc5a755a9750f")
    }

    @Test func multisigVectorMatchesChallengeAndHash() throws {
        let d = try fixture("multisig-deployment.json")
        #expect(DeploymentChallenge.text(d) == "34017000000002backupzdb0userpwfalse40true241false142false13polka-wallet")
        #expect(DeploymentChallenge.hash(d) == "3a062789bee1c2d5041a5b7f20613fde")
    }

    @Test func resultsSignaturesAndContractIDAreNotPartOfTheHash() throws {
        var d = try fixture("storage-deployment.json")
        d.contractID = 999
        d.signatureRequirement.signatures = [Signature(twinID: 17, signature: String(repeating: "ab", count: 64))]
        d.workloads[0].result = WorkloadResult(created: 5, state: .ok)
        #expect(DeploymentChallenge.hash(d) == "4e4d2e444d250e2dae5dc5a755a9750f")
    }

    @Test func containerChallengeSortsEnvAndCoversEveryField() throws {
        let c = ContainerData(image: "file:///i.tar", imageDigest: String(repeating: "a", count: 64), entrypoint: "/bin/sh",
                              args: ["-c", "x"], env: ["B": "2", "A": "1"], compute: .init(cpu: 2, memory: 1 << 30),
                              mounts: [.init(name: "data", mountpoint: "/data")], rootSize: 5)
        let text = DeploymentChallenge.dataText(.container(c))
        #expect(text == "file:///i.tar" + String(repeating: "a", count: 64) + "/bin/sh-cxA=1B=221073741824data/data5")
        var changed = c
        changed.env["A"] = "9"
        #expect(DeploymentChallenge.dataText(.container(changed)) != text)
    }

    @Test func containerWorkloadRoundTripsThroughJSON() throws {
        let json = """
            {"version":0,"name":"web","type":"container","data":{"image":"https://x/y.tar.zst","image_digest":"\(String(repeating: "0", count: 64))",
             "entrypoint":"/bin/httpd","args":["-f"],"env":{"PORT":"80"},"compute_capacity":{"cpu":1,"memory":67108864},
             "mounts":[{"name":"data","mountpoint":"/srv"}],"root_size":1048576}}
            """
        let w = try JSONDecoder().decode(Workload.self, from: Data(json.utf8))
        guard case .container(let c) = w.data else { Issue.record("not a container: \(w.data)"); return }
        #expect(c.compute.memory == 64 << 20 && c.mounts.first?.mountpoint == "/srv" && c.env["PORT"] == "80")
        #expect(w.reservation == Resources(sru: 1 << 20, cru: 1, mru: 64 << 20))
        let again = try JSONDecoder().decode(Workload.self, from: JSONEncoder().encode(w))
        #expect(again == w)
    }

    // MARK: Multisig

    struct Signers {
        let keys: [UInt32: Ed25519KeyPair]
        init(_ ids: [UInt32]) throws { keys = Dictionary(uniqueKeysWithValues: try ids.map { ($0, try Ed25519KeyPair.generate()) }) }
        var publicKeys: [UInt32: Ed25519PublicKey] { keys.mapValues(\.publicKey) }
        func sign(_ d: inout Deployment, _ ids: [UInt32]) {
            for id in ids { if let key = keys[id] { DeploymentChallenge.sign(&d, twinID: id, keyPair: key) } }
        }
    }

    func multisig() throws -> Deployment { try fixture("multisig-deployment.json") }

    func failure(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func requiredSignerPlusOneOptionalReachesTheWeight() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        signers.sign(&d, [40, 41])
        let outcome = try MultisigVerifier.verify(d, keys: signers.publicKeys)
        #expect(outcome.weight == 3 && Set(outcome.signers) == [40, 41])
    }

    @Test func aMissingNonRequiredSignatureDoesNotFailOnceTheWeightIsReached() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        signers.sign(&d, [40, 42])  // 41 never signs: not required, weight reached without it
        #expect(try MultisigVerifier.verify(d, keys: signers.publicKeys).weight == 3)
    }

    @Test func theRequiredSignerAloneIsNotEnoughWeight() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        signers.sign(&d, [40])
        let message = failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }
        #expect(message?.contains("weight 2 of the 3 required") == true)
        #expect(message?.contains("41 (weight 1)") == true)
    }

    @Test func optionalSignersCannotStandInForTheRequiredOne() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        d.signatureRequirement.weightRequired = 2
        signers.sign(&d, [41, 42])
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }?.contains("required signer(s) 40 have not signed") == true)
    }

    @Test func aForgedOptionalSignatureFailsEvenWhenWeightIsReachedOtherwise() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        signers.sign(&d, [40, 41, 42])
        d.signatureRequirement.signatures[2].signature = String(repeating: "00", count: 64)
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }?.contains("signature of twin 42 does not verify") == true)
    }

    @Test func signaturesFromStrangersUnknownTwinsAndOtherAlgorithmsAreRefused() throws {
        let signers = try Signers([40, 41, 42, 99])
        var d = try multisig()
        signers.sign(&d, [40, 99])
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }?.contains("twin 99 signed but is not one of the signature requests") == true)

        d = try multisig()
        signers.sign(&d, [40, 41])
        var keys = signers.publicKeys
        keys[41] = nil
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: keys) }?.contains("twin 41 is not on the chain") == true)

        d = try multisig()
        signers.sign(&d, [40, 41])
        d.signatureRequirement.signatures[1].signatureType = "sr25519"
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }?.contains("ed25519 signatures only") == true)
    }

    @Test func aSignatureOverAnotherDeploymentDoesNotCarryOver() throws {
        let signers = try Signers([40, 41, 42])
        var d = try multisig()
        signers.sign(&d, [40, 41])
        d.workloads[0].description = "changed after signing"
        #expect(failure { _ = try MultisigVerifier.verify(d, keys: signers.publicKeys) }?.contains("does not verify") == true)
    }

    @Test func polkaWalletStyleSignsTheWrappedHexDigest() throws {
        let d = try multisig()
        let digest = DeploymentChallenge.digest(d)
        #expect(DeploymentChallenge.signedMessage(digest: digest, style: "polka-wallet") == Array("<Bytes>3a062789bee1c2d5041a5b7f20613fde</Bytes>".utf8))
        #expect(DeploymentChallenge.signedMessage(digest: digest, style: "") == digest)
    }

    // MARK: Rules

    func valid() -> Deployment {
        var d = ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage)
        d.workloads.append(Workload(name: "web", data: .container(ContainerData(
            image: "file:///images/busybox.tar", imageDigest: String(repeating: "a", count: 64), entrypoint: "/bin/sh",
            compute: .init(cpu: 1, memory: 64 << 20), mounts: [.init(name: "data", mountpoint: "/data")]))))
        return d
    }

    func ruleFailure(_ change: (inout Deployment) -> Void) -> String? {
        var d = valid()
        change(&d)
        return failure { try DeploymentRules.validate(d) }
    }

    @Test func aValidDeploymentPasses() throws {
        try DeploymentRules.validate(valid())
    }

    @Test func badInputGetsAPreciseError() {
        #expect(ruleFailure { $0.workloads[0].name = "bad-name" }?.contains("not a valid name") == true)
        #expect(ruleFailure { $0.workloads[0].name = String(repeating: "a", count: 37) }?.contains("1 to 36") == true)
        #expect(ruleFailure { $0.workloads[1].name = "ns1" }?.contains("used twice") == true)
        #expect(ruleFailure { $0.workloads[0].version = 1 }?.contains("above the deployment's version 0") == true)
        #expect(ruleFailure { $0.workloads = [] }?.contains("at least one workload") == true)
        #expect(ruleFailure { $0.workloads.append(Workload(name: "vm", data: .unsupported("zmachine"))) }?
            .contains("does not run 'zmachine' workloads; it runs zdb, zmount, volume, container") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.mounts = [.init(name: "other_volume", mountpoint: "/x")]; d.workloads[2].data = .container(c) }
        }?.contains("'other_volume' is not a volume or zmount of this deployment") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.mounts = [.init(name: "ns1", mountpoint: "/x")]; d.workloads[2].data = .container(c) }
        }?.contains("not a volume or zmount") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.mounts = [.init(name: "data", mountpoint: "/../etc")]; d.workloads[2].data = .container(c) }
        }?.contains("without . or ..") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.imageDigest = "XYZ"; d.workloads[2].data = .container(c) }
        }?.contains("BLAKE2b-256") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.image = "ftp://x"; d.workloads[2].data = .container(c) }
        }?.contains("file://, http:// or https://") == true)
        #expect(ruleFailure { d in
            if case .container(var c) = d.workloads[2].data { c.env = ["1BAD": "x"]; d.workloads[2].data = .container(c) }
        }?.contains("names are [A-Za-z_]") == true)
        #expect(ruleFailure { $0.workloads[0].data = .zdb(ZdbData(size: 1 << 30, password: "has space")) }?.contains("printable ASCII") == true)
        #expect(ruleFailure { $0.workloads[1].data = .volume(DiskData(size: 4096)) }?.contains("at least 16777216") == true)
        #expect(ruleFailure { $0.signatureRequirement.requests = [SignatureRequest(twinID: 5, required: true, weight: 1)] }?
            .contains("twin 17 must be listed as a required signer") == true)
        #expect(ruleFailure { $0.signatureRequirement.weightRequired = 2 }?.contains("cannot be reached") == true)
        #expect(ruleFailure { $0.signatureRequirement.signatureStyle = "weird" }?.contains("signature_style") == true)
        #expect(ruleFailure { $0.metadata = String(repeating: "m", count: 5000) }?.contains("at most 4096") == true)
    }

    @Test func updateRules() throws {
        let old = valid()
        var next = old
        next.version = 1
        next.workloads[1].version = 1
        next.workloads[1].data = .volume(DiskData(size: 3 << 30))
        try DeploymentRules.validateUpdate(from: old, to: next)

        var jump = next
        jump.version = 2
        #expect(failure { try DeploymentRules.validateUpdate(from: old, to: jump) }?.contains("must carry version 1") == true)

        var typeChange = next
        typeChange.workloads[1] = Workload(version: 1, name: "data", data: .zmount(DiskData(size: 3 << 30)))
        #expect(failure { try DeploymentRules.validateUpdate(from: old, to: typeChange) }?.contains("cannot change from volume to zmount") == true)

        var silent = next
        silent.workloads[0].data = .zdb(ZdbData(size: 2 << 30, mode: .seq, password: "s3cret"))
        #expect(failure { try DeploymentRules.validateUpdate(from: old, to: silent) }?.contains("changed without carrying the new version 1") == true)

        var addedOld = next
        addedOld.workloads.append(Workload(version: 0, name: "late", data: .volume(DiskData(size: 1 << 30))))
        #expect(failure { try DeploymentRules.validateUpdate(from: old, to: addedOld) }?.contains("new workload must carry") == true)

        var otherTwin = next
        otherTwin.twinID = 18
        #expect(failure { try DeploymentRules.validateUpdate(from: old, to: otherTwin) } != nil)
    }

    @Test func malformedJSONIsADecodeErrorNotACrash() {
        for text in ["", "{", "[]", "{\"twin_id\": -1}", "{\"twin_id\": 1, \"signature_requirement\": {\"requests\": 5}}",
                     "{\"twin_id\": 1, \"signature_requirement\": {}, \"workloads\": [{\"name\": \"x\", \"type\": \"zdb\", \"data\": {\"size\": \"big\"}}]}"] {
            #expect(throws: DecodingError.self) { _ = try JSONDecoder().decode(Deployment.self, from: Data(text.utf8)) }
        }
    }

    // MARK: Transport

    @Test func sealedBoxesOpenOnlyWithTheNodeKey() throws {
        let node = try Ed25519KeyPair.generate(), other = try Ed25519KeyPair.generate()
        let secret = Array("{\"password\":\"s3cret\"}".utf8)
        let sealed = try SealedBox.seal(secret, to: node.publicKey)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("s3cret"))
        #expect(try SealedBox.open(sealed, with: node) == secret)
        #expect(throws: GridTypesError.self) { _ = try SealedBox.open(sealed, with: other) }
        var damaged = sealed
        damaged[damaged.count - 1] ^= 1
        #expect(throws: GridTypesError.self) { _ = try SealedBox.open(damaged, with: node) }
    }
}
