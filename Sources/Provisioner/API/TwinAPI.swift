import ChainClient
import Foundation
import GridTypes
import Hummingbird
import Logging
import NIOCore

/// The twin-facing HTTP API: deploy, update, get, list, changes and node statistics. Every call but
/// statistics is signed by the calling twin; deployment bodies may be sealed to the node's key.
public struct TwinAPI: Sendable {
    public static let prefix = "/api/v1"
    let provisioner: Provisioner
    let authenticator: RequestAuthenticator
    let nodeKeys: Ed25519KeyPair
    let logger: Logger

    public init(provisioner: Provisioner, chain: any GridChain, nodeKeys: Ed25519KeyPair, logger: Logger = Logger(label: "provisioner.api")) {
        self.provisioner = provisioner
        self.authenticator = RequestAuthenticator(chain: chain)
        self.nodeKeys = nodeKeys
        self.logger = logger
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        let api = self
        router.post("\(Self.prefix)/deployments") { request, _ in
            await api.handle(request) { twin, body in
                let deployment = try api.decodeDeployment(body)
                let hash = try await api.provisioner.deploy(deployment, caller: twin)
                return (202, .object(["contract_id": .number(Double(deployment.contractID)), "hash": .string(hash), "state": .string("accepted")]))
            }
        }
        router.put("\(Self.prefix)/deployments/:contract") { request, context in
            await api.handle(request) { twin, body in
                let deployment = try api.decodeDeployment(body)
                guard let id = context.parameters.get("contract", as: UInt64.self), id == deployment.contractID else {
                    throw ProvisionerError.badRequest("the path's contract id must equal the deployment's contract_id \(deployment.contractID)")
                }
                let hash = try await api.provisioner.update(deployment, caller: twin)
                return (202, .object(["contract_id": .number(Double(deployment.contractID)), "hash": .string(hash), "state": .string("accepted")]))
            }
        }
        router.get("\(Self.prefix)/deployments") { request, _ in
            await api.handle(request) { twin, _ in
                (200, try api.json(try await api.provisioner.list(caller: twin)))
            }
        }
        router.get("\(Self.prefix)/deployments/:contract") { request, context in
            await api.handle(request) { twin, _ in
                (200, try api.json(try await api.provisioner.get(contractID: try api.contractID(context), caller: twin)))
            }
        }
        router.get("\(Self.prefix)/deployments/:contract/changes") { request, context in
            await api.handle(request) { twin, _ in
                (200, try api.json(try await api.provisioner.changes(contractID: try api.contractID(context), caller: twin)))
            }
        }
        router.get("\(Self.prefix)/node/statistics") { request, _ in
            await api.handle(request, authenticated: false) { _, _ in
                (200, try api.json(try await api.provisioner.statistics()))
            }
        }
        return router
    }

    /// Serves until cancelled. `onListening` gets the bound port (useful with port 0).
    public func run(host: String, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await application(host: host, port: port, onListening: onListening).runService(gracefulShutdownSignals: [])
    }

    public func application(host: String, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "node-agent"),
                    onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    func contractID(_ context: BasicRequestContext) throws -> UInt64 {
        guard let id = context.parameters.get("contract", as: UInt64.self) else {
            throw ProvisionerError.badRequest("the contract id in the path must be a number")
        }
        return id
    }

    func decodeDeployment(_ body: [UInt8]) throws -> Deployment {
        do { return try JSONDecoder().decode(Deployment.self, from: Data(body)) } catch let error as DecodingError {
            throw ProvisionerError.badRequest("malformed deployment JSON: \(Self.describe(error))")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(path(context.codingPath + [key]))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type at \(path(context.codingPath)): \(context.debugDescription)"
        case .dataCorrupted(let context): return "\(path(context.codingPath).isEmpty ? "body" : path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    func json<T: Encodable>(_ value: T) throws -> JSONValue {
        let encoder = JSONEncoder()
        return try JSONDecoder().decode(JSONValue.self, from: try encoder.encode(value))
    }

    /// Reads a bounded body, opens a sealed one, authenticates, runs the handler and turns every
    /// error into a JSON reply with the status the error calls for.
    func handle(_ request: Request, authenticated: Bool = true,
                _ body: @Sendable (UInt32, [UInt8]) async throws -> (Int, JSONValue)) async -> Response {
        var request = request
        do {
            let limit = Deployment.Limits.maxBodyBytes + 64
            let buffer: ByteBuffer
            do { buffer = try await request.collectBody(upTo: limit) } catch {
                throw ProvisionerError.badRequest("the body is larger than \(Deployment.Limits.maxBodyBytes) bytes")
            }
            let raw = Array(buffer.readableBytesView)
            var twin: UInt32 = 0
            if authenticated {
                var headers = [String: String]()
                for field in request.headers { headers[field.name.rawName] = field.value }
                let target = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
                twin = try await authenticator.authenticate(method: request.method.rawValue, path: target, headers: headers, body: raw)
            }
            var plain = raw
            if request.headers[.contentType]?.hasPrefix(SealedBox.contentType) == true {
                do { plain = try SealedBox.open(raw, with: nodeKeys) } catch { throw ProvisionerError.badRequest("\(error)") }
            }
            let (status, value) = try await body(twin, plain)
            return Self.response(status, value)
        } catch let error as ProvisionerError {
            if error.httpStatus >= 500 { logger.error("request failed", metadata: ["error": "\(error)"]) }
            return Self.response(error.httpStatus, .object(["error": .string(error.description), "status": .number(Double(error.httpStatus))]))
        } catch {
            return Self.response(500, .object(["error": .string("\(error)"), "status": .number(500)]))
        }
    }

    static func response(_ status: Int, _ value: JSONValue) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
