import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Copies an image archive from its URL into a file of the store while hashing it: the digest is
/// checked on exactly the bytes that are unpacked afterwards (no second read of the source).
enum ImageFetcher {
    struct Result: Sendable {
        var bytes: UInt64
        var digest: String
    }

    static func fetch(url text: String, to destination: String, limit: UInt64,
                      progress: (@Sendable (ImagePullProgress) -> Void)?) async throws(ContainerRuntimeError) -> Result {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else {
            throw .imageFetch(url: ImageURL.redacted(text), message: "not a URL; use file:///path or http(s)://host/path")
        }
        switch scheme {
        case "file":
            guard url.host == nil || url.host == "" || url.host == "localhost" else {
                throw .imageFetch(url: ImageURL.redacted(text), message: "file:// URLs name a local path (file:///path)")
            }
            let path = url.path
            return try await offload { () throws(ContainerRuntimeError) in
                try copyFile(path, to: destination, url: ImageURL.redacted(text), limit: limit, progress: progress)
            }
        case "http", "https":
            return try await HTTPDownload(url: url, destination: destination, limit: limit, progress: progress).run()
        default:
            throw .imageFetch(url: ImageURL.redacted(text), message: "scheme \(scheme) is not supported; use file://, http:// or https://")
        }
    }

    private static func copyFile(_ path: String, to destination: String, url: String, limit: UInt64,
                                 progress: (@Sendable (ImagePullProgress) -> Void)?) throws(ContainerRuntimeError) -> Result {
        let source = open(path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw .imageFetch(url: url, message: "open \(path): \(String(cString: strerror(errno)))") }
        defer { close(source) }
        var info = stat()
        guard fstat(source, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw .imageFetch(url: url, message: "\(path) is not a regular file")
        }
        let total = UInt64(max(0, info.st_size))
        guard total <= limit else { throw .imageLimit(what: "the archive size (\(total) bytes)", limit: limit) }
        let sink = try DigestingFile(path: destination, url: url, limit: limit, total: total, progress: progress)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(source, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .imageFetch(url: url, message: "read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return try sink.finish()
    }
}

/// Runs blocking work (file copies, unpacking) on a dispatch thread, not the cooperative pool.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws(ContainerRuntimeError) -> T) async throws(ContainerRuntimeError) -> T {
    let result: Result<T, ContainerRuntimeError> = await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            do throws(ContainerRuntimeError) { continuation.resume(returning: .success(try body())) } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}

/// Writes the fetched bytes to a file while hashing them, enforcing the size cap and reporting
/// progress. Used from one thread at a time.
final class DigestingFile: @unchecked Sendable {
    let path: String
    let url: String
    private let fd: Int32
    private let hasher = Blake2bStream()
    private let limit: UInt64
    var total: UInt64?
    private(set) var bytes: UInt64 = 0
    private var reported: UInt64 = 0
    private let progress: (@Sendable (ImagePullProgress) -> Void)?

    init(path: String, url: String, limit: UInt64, total: UInt64?, progress: (@Sendable (ImagePullProgress) -> Void)?) throws(ContainerRuntimeError) {
        self.path = path
        self.url = url
        self.limit = limit
        self.total = total
        self.progress = progress
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
        progress?(ImagePullProgress(phase: .download, bytesDone: 0, bytesTotal: total))
    }

    deinit { close(fd) }

    func write(_ block: UnsafeRawBufferPointer) throws(ContainerRuntimeError) {
        guard bytes + UInt64(block.count) <= limit else { throw .imageLimit(what: "the archive size", limit: limit) }
        var done = 0
        while done < block.count {
            let n = Glibc.write(fd, block.baseAddress! + done, block.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .io(operation: "write", path: path, errno: n < 0 ? errno : EIO) }
            done += n
        }
        hasher.update(block)
        bytes += UInt64(block.count)
        if bytes - reported >= 1 << 20 {
            reported = bytes
            progress?(ImagePullProgress(phase: .download, bytesDone: bytes, bytesTotal: total))
        }
    }

    func finish() throws(ContainerRuntimeError) -> ImageFetcher.Result {
        if let total, total != bytes {
            throw .imageFetch(url: url, message: "got \(bytes) bytes, expected \(total) (the transfer was cut short)")
        }
        progress?(ImagePullProgress(phase: .download, bytesDone: bytes, bytesTotal: total ?? bytes))
        return .init(bytes: bytes, digest: hasher.finish())
    }
}

/// An HTTP(S) GET streamed into a DigestingFile through URLSession's delegate callbacks, which
/// arrive one at a time on the session's serial queue.
final class HTTPDownload: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let url: URL
    private let destination: String
    private let limit: UInt64
    private let progress: (@Sendable (ImagePullProgress) -> Void)?
    private let lock = NSLock()
    private var sink: DigestingFile?
    private var failure: ContainerRuntimeError?
    private var continuation: CheckedContinuation<Void, Never>?
    private var finished = false

    init(url: URL, destination: String, limit: UInt64, progress: (@Sendable (ImagePullProgress) -> Void)?) {
        self.url = url
        self.destination = destination
        self.limit = limit
        self.progress = progress
    }

    private var display: String { ImageURL.redacted(url.absoluteString) }

    func run() async throws(ContainerRuntimeError) -> ImageFetcher.Result {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60  // seconds without a byte
        configuration.timeoutIntervalForResource = 6 * 3600
        configuration.requestCachePolicy = .reloadIgnoringLocalAndRemoteCacheData
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: configuration, delegate: self, delegateQueue: queue)
        let task = session.dataTask(with: URLRequest(url: url))
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = lock.withLock {
                    self.continuation = continuation
                    return finished
                }
                if done { continuation.resume() } else { task.resume() }
            }
        } onCancel: {
            task.cancel()
        }
        session.finishTasksAndInvalidate()
        let (failure, sink) = lock.withLock { (self.failure, self.sink) }
        if let failure { throw failure }
        guard let sink else { throw .imageFetch(url: display, message: "no response") }
        return try sink.finish()
    }

    private func fail(_ error: ContainerRuntimeError) {
        lock.lock()
        if failure == nil { failure = error }
        lock.unlock()
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
            let code = (response as? HTTPURLResponse)?.statusCode ?? 0
            fail(.imageFetch(url: display, message: "HTTP status \(code) (expected 200)"))
            completionHandler(.cancel)
            return
        }
        let expected = response.expectedContentLength
        if expected > 0, UInt64(expected) > limit {
            fail(.imageLimit(what: "the archive size (\(expected) bytes announced)", limit: limit))
            completionHandler(.cancel)
            return
        }
        do throws(ContainerRuntimeError) {
            let file = try DigestingFile(path: destination, url: display, limit: limit, total: expected > 0 ? UInt64(expected) : nil, progress: progress)
            lock.lock()
            sink = file
            lock.unlock()
            completionHandler(.allow)
        } catch {
            fail(error)
            completionHandler(.cancel)
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock()
        let file = sink
        let failed = failure != nil
        lock.unlock()
        guard let file, !failed else { return }
        let error: ContainerRuntimeError? = data.withUnsafeBytes { raw in
            do throws(ContainerRuntimeError) {
                try file.write(raw)
                return nil
            } catch {
                return error
            }
        }
        if let error {
            fail(error)
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        if let error {
            fail(.imageFetch(url: display, message: error.localizedDescription))
        }
        lock.lock()
        finished = true
        let waiting = continuation
        continuation = nil
        lock.unlock()
        waiting?.resume()
    }
}
