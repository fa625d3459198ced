/// A command that was called right but could not do its work (a file, the ledger, a node, a
/// workload): printed as `Error: <description>`, without the usage text that argument mistakes
/// (ValidationError) get.
struct GridTwinFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
