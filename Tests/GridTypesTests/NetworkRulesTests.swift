import Foundation
import GridTypes
import Testing

/// The network part of the deployment model: strict CIDR parsing, the challenge extended only when
/// a network is given, and clear refusals of bad input at validation and admission.
struct NetworkRulesTests {
    static func deployment(contract: UInt64 = 1, _ networks: [(String, ContainerNetwork?)]) -> Deployment {
        var d = Deployment(twinID: 5, description: "net",
                           signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: 5, required: true, weight: 1)], weightRequired: 1),
                           workloads: networks.map { name, network in
                               Workload(name: name, data: .container(ContainerData(
                                   image: "file:///img.tar", imageDigest: String(repeating: "a", count: 64), entrypoint: "/bin/sh",
                                   compute: .init(cpu: 1, memory: 64 << 20), network: network)))
                           })
        d.contractID = contract
        return d
    }

    static func reason(_ body: () throws(GridTypesError) -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    @Test func cidrParsingIsStrict() {
        #expect(IPv4Network("10.20.0.0/24")?.description == "10.20.0.0/24")
        for bad in ["10.20.0.1/24", "10.20.0.0/33", "10.020.0.0/24", "10.20.0/24", "10.20.0.0", "256.1.1.0/24", "10.20.0.0/+8", " 10.0.0.0/8"] {
            #expect(IPv4Network(bad) == nil, "\(bad)")
        }
        #expect(IPv4Network("10.0.0.0/8")!.overlaps(IPv4Network("10.5.0.0/16")!))
        #expect(!IPv4Network("10.1.0.0/16")!.overlaps(IPv4Network("10.2.0.0/16")!))
        #expect(NetworkRules.parseAllow("192.0.2.0/24:443")?.port == 443)
        #expect(NetworkRules.parseAllow("192.0.2.0/24:0") == nil)
    }

    @Test func challengeChangesOnlyWithANetwork() throws {
        let plain = Self.deployment([("web", nil)])
        let text = DeploymentChallenge.dataText(plain.workloads[0].data)
        // The pre-networking rendering: image, digest, entrypoint, cpu, memory, root size.
        #expect(text == "file:///img.tar" + String(repeating: "a", count: 64) + "/bin/sh" + "1" + "\(64 << 20)" + "0")
        let json = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
        #expect(!json.contains("network"))
        let networked = Self.deployment([("web", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 8080)],
                                                                  egress: .init(mode: .allow, allow: ["10.0.0.0/8:443"])))])
        #expect(DeploymentChallenge.dataText(networked.workloads[0].data) == text + "networktcp808080allow10.0.0.0/8:443")
        let decoded = try JSONDecoder().decode(Deployment.self, from: try JSONEncoder().encode(networked))
        #expect(decoded == networked)
    }

    @Test func validationRefusesBadNetworks() {
        let cases: [([(String, ContainerNetwork?)], String)] = [
            ([("a", ContainerNetwork(ipRange: "10.1.0.1/24"))], "not an IPv4 CIDR"),
            ([("a", ContainerNetwork(ipRange: "8.8.8.0/24"))], "not inside"),
            ([("a", ContainerNetwork(ipRange: "10.1.0.0/24")), ("b", ContainerNetwork(ipRange: "10.2.0.0/24"))], "differs"),
            ([("a", ContainerNetwork(ipRange: "10.1.0.0/24")), ("b", ContainerNetwork())], "differs"),
            ([("a", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 8080)])),
              ("b", ContainerNetwork(ports: [.init(protocol: .tcp, port: 81, publicPort: 8080)]))], "published twice"),
            ([("a", ContainerNetwork(egress: .init(mode: .allow, allow: ["10.0.0.0/8:99999"])))], "not CIDR"),
            ([("a", ContainerNetwork(egress: .init(mode: .none, allow: ["10.0.0.0/8"])))], "needs mode"),
        ]
        for (networks, expected) in cases {
            let d = Self.deployment(networks)
            let message = Self.reason { () throws(GridTypesError) in try DeploymentRules.validate(d) }
            #expect(message?.contains(expected) == true, "\(networks.map(\.0)): \(message ?? "accepted")")
        }
        #expect(Self.reason { () throws(GridTypesError) in try DeploymentRules.validate(Self.deployment([("a", ContainerNetwork(ipRange: "10.1.0.0/24"))])) } == nil)
    }

    @Test func admissionRefusesConflictsAndWhatTheFarmerForbids() {
        let policy = NetworkPolicy(minPublicPort: 1024, maxInterfaces: 2, reservedPorts: [2021])
        let other = Self.deployment(contract: 2, [("o", ContainerNetwork(ipRange: "10.50.0.0/16", ports: [.init(protocol: .tcp, port: 80, publicPort: 8080)]))])
        let cases: [([(String, ContainerNetwork?)], String)] = [
            ([("a", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 80)]))], "below 1024"),
            ([("a", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 8080)]))], "already published by contract 2"),
            ([("a", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 2021)]))], "used by the node"),
            ([("a", ContainerNetwork(ipRange: "10.50.3.0/24"))], "overlaps 10.50.0.0/16 of contract 2"),
            ([("a", ContainerNetwork(ipRange: "10.201.7.0/24"))], "automatic pool"),
            ([("a", ContainerNetwork()), ("b", ContainerNetwork()), ("c", ContainerNetwork())], "allows 2"),
        ]
        for (networks, expected) in cases {
            let d = Self.deployment(networks)
            let message = Self.reason { () throws(GridTypesError) in try NetworkRules.admit(d, others: [other], policy: policy) }
            #expect(message?.contains(expected) == true, "\(networks.map(\.0)): \(message ?? "accepted")")
        }
        // UDP 8080 is another port than TCP 8080; a farmer allowing low ports admits 80.
        let udp = Self.deployment([("a", ContainerNetwork(ports: [.init(protocol: .udp, port: 80, publicPort: 8080)]))])
        #expect(Self.reason { () throws(GridTypesError) in try NetworkRules.admit(udp, others: [other], policy: policy) } == nil)
        let low = Self.deployment([("a", ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 80)]))])
        var lenient = policy
        lenient.minPublicPort = 1
        #expect(Self.reason { () throws(GridTypesError) in try NetworkRules.admit(low, others: [other], policy: lenient) } == nil)
    }
}
