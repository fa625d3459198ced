// swift-tools-version:6.0
// The node agent of a decentralized cloud. Data path, by folder:
// ChainClient -> Provisioner -> ContainerRuntime / ShardServer -> CapacityReporter, wired by NodeAgent.
import PackageDescription

let package = Package(
    name: "node-agent",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "node-agent", targets: ["NodeAgent"]),
        .executable(name: "grid-twin", targets: ["GridTwin"]),
        .executable(name: "ledger-bench", targets: ["LedgerBench"]),
        .executable(name: "runtime-bench", targets: ["RuntimeBench"]),
        .executable(name: "image-bench", targets: ["ImageBench"]),
        .executable(name: "tfchain-bench", targets: ["TFChainBench"]),
        .executable(name: "provisioner-bench", targets: ["ProvisionerBench"]),
        .executable(name: "storage-bench", targets: ["StorageBench"]),
        .executable(name: "capacity-bench", targets: ["CapacityBench"]),
        .executable(name: "status-bench", targets: ["StatusBench"]),
        .executable(name: "network-bench", targets: ["NetworkBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.0.0"),
        // WebSocket client for TFChain's JSON-RPC (SwiftNIO based).
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.0"),
        // The twin-facing deployment API.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.20.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        // The agent's Prometheus metrics endpoint.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
    ],
    targets: [
        // System libraries from Debian's -dev packages.
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // Container images: tar, gzip and zstd parsing (entries are written by our own code).
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // xxHash for Substrate's twox128/twox64 storage hashers.
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // ISA-L's Reed-Solomon erasure code for the storage client.
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        // Syscalls Swift's Glibc module cannot reach, and everything that runs between fork and exec.
        .target(name: "CNodeShim"),
        // CRC32-C for the shard store (SSE4.2 when the CPU has it).
        .target(name: "CCRC32C"),

        // Shared grid types: keys, hashes, addresses, the deployment model and its challenge (MD5 from swift-crypto).
        .target(name: "GridTypes", dependencies: ["CSodium", .product(name: "Crypto", package: "swift-crypto")]),
        // Chain access (embedded ledger, TFChain).
        .target(name: "ChainClient", dependencies: [
            "GridTypes", "CXXHash",
            .product(name: "WSClient", package: "swift-websocket"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Deployments -> workloads.
        .target(name: "Provisioner", dependencies: [
            "GridTypes", "ChainClient",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),
        // Isolated containers.
        .target(name: "ContainerRuntime", dependencies: ["GridTypes", "CNodeShim", "CSeccomp", "CCap", "CArchive", "CSodium"]),
        // 0-db compatible shard store.
        .target(
            name: "ShardServer",
            dependencies: [
                "GridTypes", "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Container networks: bridges, veths, namespaces and nftables rules (iproute2 and nftables).
        .target(name: "WorkloadNetwork", dependencies: ["GridTypes"]),
        // The provisioner's workload managers on this node's real runtime and shard server.
        .target(name: "WorkloadBackends", dependencies: ["Provisioner", "ContainerRuntime", "ShardServer", "GridTypes", "WorkloadNetwork"]),
        // The twin's side of storage: files as compressed, encrypted, erasure-coded shards on 0-db namespaces.
        .target(
            name: "StorageClient",
            dependencies: [
                "GridTypes", "CSodium", "CZstd", "CISAL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Capacity, uptime and usage reports.
        .target(name: "CapacityReporter", dependencies: [
            "GridTypes", "ChainClient",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The daemon and the `node-agent` command line.
        .executableTarget(
            name: "NodeAgent",
            dependencies: [
                "GridTypes", "ChainClient", "Provisioner", "ContainerRuntime", "ShardServer", "CapacityReporter", "WorkloadBackends",
                "WorkloadNetwork", "CNodeShim", "CSodium", "CSeccomp", "CCap", "CZstd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                // Farmer operations: the admin socket (HTTP on a Unix socket) and its client, metrics.
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The twin's (user's) command line: twins, funds, nodes, contracts.
        .executableTarget(
            name: "GridTwin",
            dependencies: [
                "GridTypes", "ChainClient", "StorageClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks (bench/): programs that print figures.
        .executableTarget(name: "LedgerBench", dependencies: ["ChainClient", "Provisioner", "GridTypes"], path: "bench/LedgerBench"),
        .executableTarget(name: "RuntimeBench", dependencies: ["ContainerRuntime"], path: "bench/RuntimeBench"),
        .executableTarget(name: "ProvisionerBench", dependencies: [
            "ChainClient", "Provisioner", "ShardServer", "ContainerRuntime", "WorkloadBackends", "GridTypes",
            .product(name: "Logging", package: "swift-log"),
        ], path: "bench/ProvisionerBench"),
        .executableTarget(name: "NetworkBench", dependencies: ["WorkloadNetwork", "GridTypes"], path: "bench/NetworkBench"),
        .executableTarget(name: "ImageBench", dependencies: ["ContainerRuntime", "GridTypes"], path: "bench/ImageBench"),
        .executableTarget(name: "CapacityBench", dependencies: ["CapacityReporter"], path: "bench/CapacityBench"),
        .executableTarget(name: "StatusBench", dependencies: ["ChainClient", "GridTypes"], path: "bench/StatusBench"),
        .executableTarget(name: "TFChainBench", dependencies: ["ChainClient", "GridTypes"], path: "bench/TFChainBench",
                         exclude: ["scalecodec_bench.py"]),
        .executableTarget(name: "StorageBench", dependencies: ["StorageClient", "ShardServer", "GridTypes", "CSodium", "CZstd", "CISAL",
                                                               .product(name: "Logging", package: "swift-log")],
                         path: "bench/StorageBench"),

        .testTarget(name: "GridTypesTests", dependencies: ["GridTypes", "CSodium"]),
        .testTarget(name: "NodeShimTests", dependencies: ["CNodeShim"]),
        .testTarget(name: "WorkloadNetworkTests", dependencies: ["WorkloadNetwork", "GridTypes"]),
        .testTarget(name: "ContainerRuntimeTests", dependencies: ["ContainerRuntime", "CArchive", "CNodeShim", "GridTypes"]),
        .testTarget(name: "ChainClientTests", dependencies: ["ChainClient", "GridTypes"],
                    exclude: ["tfchain_double", "Fixtures"]),
        .testTarget(name: "ProvisionerTests", dependencies: [
            "Provisioner", "ChainClient", "GridTypes",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ], exclude: ["Fixtures"]),
        .testTarget(name: "NodeAgentTests", dependencies: ["NodeAgent", "GridTypes", "ChainClient", "Provisioner", "CapacityReporter", "TOMLKit",
                                                   .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "CapacityReporterTests", dependencies: ["CapacityReporter", "ChainClient", "GridTypes"],
                    exclude: ["Fixtures"]),
        .testTarget(
            name: "ShardServerTests",
            dependencies: [
                "ShardServer", "GridTypes",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "StorageClientTests",
            dependencies: [
                "StorageClient", "ShardServer", "GridTypes", "GridTwin",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
