import Glibc

/// The process's limit on open file descriptors. Every ZeroMQ TCP connection holds one on each
/// side, so a coordinator serving N workers needs N descriptors for them besides its own few
/// dozen (results files, the journal, ZeroMQ's internal pipes); many systems start processes
/// with a soft limit of 1,024.
public enum FileLimit {
    static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

    /// The soft limit now in force.
    public static var current: Int {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }

    /// Raises the soft limit to the hard limit (which an unprivileged process may do) and returns
    /// the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur != limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &limit)
        }
        return current
    }
}
