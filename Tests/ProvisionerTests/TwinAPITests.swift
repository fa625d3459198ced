import Foundation
import GridTypes
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import NIOCore
import Testing
@testable import Provisioner

/// The twin API as a client meets it: signed requests, bad input, sealed bodies.
@Suite struct TwinAPITests {
    struct Reply {
        var status: Int
        var json: [String: Any]
        var array: [Any]
        var text: String
    }

    func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, body: [UInt8] = [],
              twin: UInt32?, key: Ed25519KeyPair?, timestamp: Int64 = Int64(Date().timeIntervalSince1970),
              contentType: String = "application/json", nonce: String = UUID().uuidString, headers extra: [String: String] = [:]) async throws -> Reply {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        if let twin, let key {
            for (name, value) in TwinRequestSignature.headers(method: method.rawValue, path: path, body: body, twinID: twin, keyPair: key, now: timestamp, nonce: nonce) {
                headers[HTTPField.Name(name)!] = value
            }
        }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        return try await client.execute(uri: path, method: method, headers: headers, body: ByteBuffer(bytes: body)) { response in
            let text = String(buffer: response.body)
            let object = try? JSONSerialization.jsonObject(with: Data(text.utf8))
            return Reply(status: Int(response.status.code), json: object as? [String: Any] ?? [:], array: object as? [Any] ?? [], text: text)
        }
    }

    func app(_ h: ProvisionerHarness, nodeKeys: Ed25519KeyPair) -> some ApplicationProtocol {
        TwinAPI(provisioner: h.provisioner, chain: h.chain, nodeKeys: nodeKeys).application(host: "127.0.0.1", port: 0)
    }

    @Test func signedDeployGetListAndChanges() async throws {
        let h = try ProvisionerHarness()
        let node = try Ed25519KeyPair.generate()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        try await app(h, nodeKeys: node).test(.router) { client in
            let body = Array(try JSONEncoder().encode(d))
            let accepted = try await call(client, .post, "/api/v1/deployments", body: body, twin: h.ownerTwin, key: h.owner)
            #expect(accepted.status == 202, "\(accepted.text)")
            #expect(accepted.json["hash"] as? String == DeploymentChallenge.hash(d))
            await h.provisioner.settle()

            let got = try await call(client, .get, "/api/v1/deployments/\(d.contractID)", twin: h.ownerTwin, key: h.owner)
            #expect(got.status == 200)
            let workloads = got.json["workloads"] as? [[String: Any]] ?? []
            #expect(workloads.compactMap { ($0["result"] as? [String: Any])?["state"] as? String } == ["ok", "ok"])
            #expect(!got.text.contains("s3cret"))

            let list = try await call(client, .get, "/api/v1/deployments", twin: h.ownerTwin, key: h.owner)
            #expect(list.status == 200 && list.array.count == 1)
            let changes = try await call(client, .get, "/api/v1/deployments/\(d.contractID)/changes", twin: h.ownerTwin, key: h.owner)
            #expect(changes.status == 200 && changes.array.count >= 2)

            // Another twin sees none of it.
            let other = try Ed25519KeyPair.generate()
            h.chain.put(Twin(id: 30, publicKey: other.publicKey))
            #expect(try await call(client, .get, "/api/v1/deployments/\(d.contractID)", twin: 30, key: other).status == 403)
            #expect(try await call(client, .get, "/api/v1/deployments", twin: 30, key: other).array.isEmpty)

            let stats = try await call(client, .get, "/api/v1/node/statistics", twin: nil, key: nil)
            #expect(stats.status == 200 && (stats.json["used"] as? [String: Any])?["hru"] as? Int == 1 << 30)
        }
    }

    @Test func requestSignaturesAreChecked() async throws {
        let h = try ProvisionerHarness()
        try await app(h, nodeKeys: try Ed25519KeyPair.generate()).test(.router) { client in
            let path = "/api/v1/deployments"
            let unsigned = try await call(client, .get, path, twin: nil, key: nil)
            #expect(unsigned.status == 401 && unsigned.text.contains("X-Grid-Signature"))

            let impostor = try Ed25519KeyPair.generate()
            #expect(try await call(client, .get, path, twin: h.ownerTwin, key: impostor).text.contains("does not verify"))
            #expect(try await call(client, .get, path, twin: 999, key: impostor).text.contains("twin 999 does not exist on chain"))

            let old = Int64(Date().timeIntervalSince1970) - 120
            let stale = try await call(client, .get, path, twin: h.ownerTwin, key: h.owner, timestamp: old)
            #expect(stale.status == 401 && stale.text.contains("at most ±60 s"))

            // The same signed request twice: the second is a replay.
            let now = Int64(Date().timeIntervalSince1970)
            #expect(try await call(client, .get, path, twin: h.ownerTwin, key: h.owner, timestamp: now, nonce: "nonce-one").status == 200)
            let replay = try await call(client, .get, path, twin: h.ownerTwin, key: h.owner, timestamp: now, nonce: "nonce-one")
            #expect(replay.status == 401 && replay.text.contains("replay"))
            // The same call in the same second with a fresh nonce is a new request.
            #expect(try await call(client, .get, path, twin: h.ownerTwin, key: h.owner, timestamp: now, nonce: "nonce-two").status == 200)

            // A signature made for another path (or body) does not carry over.
            var headers = TwinRequestSignature.headers(method: "GET", path: "/api/v1/deployments/1", body: [], twinID: h.ownerTwin, keyPair: h.owner)
            headers["Content-Type"] = "application/json"
            #expect(try await call(client, .get, path, twin: nil, key: nil, headers: headers).status == 401)
        }
    }

    @Test func badBodiesGetPreciseErrors() async throws {
        let h = try ProvisionerHarness()
        try await app(h, nodeKeys: try Ed25519KeyPair.generate()).test(.router) { client in
            let path = "/api/v1/deployments"
            let malformed = try await call(client, .post, path, body: Array("{\"twin_id\": 17".utf8), twin: h.ownerTwin, key: h.owner)
            #expect(malformed.status == 400 && malformed.text.contains("malformed deployment JSON"))

            let missing = try await call(client, .post, path, body: Array("{\"twin_id\": 17}".utf8), twin: h.ownerTwin, key: h.owner)
            #expect(missing.status == 400 && missing.text.contains("missing field signature_requirement"))

            let huge = [UInt8](repeating: 0x20, count: Deployment.Limits.maxBodyBytes + 100)
            let oversized = try await call(client, .post, path, body: huge, twin: h.ownerTwin, key: h.owner)
            #expect(oversized.status == 400 && oversized.text.contains("larger than"))

            var vm = ProvisionerHarness.deployment(workloads: [Workload(name: "vm", data: .unsupported("zmachine"))])
            vm.contractID = 5
            let unsupported = try await call(client, .post, path, body: Array(try JSONEncoder().encode(vm)), twin: h.ownerTwin, key: h.owner)
            #expect(unsupported.status == 422 && unsupported.text.contains("it runs zdb, zmount, volume, container"))
        }
    }

    @Test func sealedDeploymentsOpenOnlyOnTheirNode() async throws {
        let h = try ProvisionerHarness()
        let node = try Ed25519KeyPair.generate()
        let d = try await h.contracted(ProvisionerHarness.deployment(workloads: ProvisionerHarness.storage))
        let plain = Array(try JSONEncoder().encode(d))
        try await app(h, nodeKeys: node).test(.router) { client in
            let wrongNode = try SealedBox.seal(plain, to: try Ed25519KeyPair.generate().publicKey)
            let refused = try await call(client, .post, "/api/v1/deployments", body: wrongNode, twin: h.ownerTwin, key: h.owner,
                                         contentType: SealedBox.contentType)
            #expect(refused.status == 400 && refused.text.contains("not sealed to this node's key"))
            let sealed = try SealedBox.seal(plain, to: node.publicKey)
            let accepted = try await call(client, .post, "/api/v1/deployments", body: sealed, twin: h.ownerTwin, key: h.owner,
                                          contentType: SealedBox.contentType)
            #expect(accepted.status == 202, "\(accepted.text)")
        }
    }
}
