/// Owns C strings and arrays handed to the C shim for the length of one call.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8CString)
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
        p.initialize(from: utf8, count: utf8.count)
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func optionalString(_ s: String?) -> UnsafePointer<CChar>? { s.map { UnsafePointer(string($0)) } }

    /// A NULL-terminated array of C strings (argv/envp).
    func stringArray(_ list: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: list.count + 1)
        for (i, s) in list.enumerated() { (p + i).initialize(to: string(s)) }
        (p + list.count).initialize(to: nil)
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func constStringArray(_ list: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        UnsafePointer(UnsafeMutableRawPointer(stringArray(list)).assumingMemoryBound(to: UnsafePointer<CChar>?.self))
    }

    func array<T>(_ list: [T]) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(list.count, 1))
        if !list.isEmpty { p.initialize(from: list, count: list.count) }
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func bytes(_ list: [UInt8]) -> UnsafeRawPointer {
        UnsafeRawPointer(array(list))
    }

    deinit {
        for p in allocations { p.deallocate() }
    }
}
