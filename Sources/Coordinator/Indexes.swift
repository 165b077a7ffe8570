/// The structures that keep the event loop's work per message and per pass independent of the
/// number of workers and trials (docs/performance.md, "A thousand workers"): a heap for timers,
/// the workers by credit left, and rankings that answer "how many precede this one" without a
/// scan.

/// A binary min-heap. Entries are never updated in place: the owner pushes a new entry and
/// discards stale ones when they reach the top (lazy deletion).
public struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    public init() {}

    public var count: Int { items.count }
    public var isEmpty: Bool { items.isEmpty }
    public var min: Element? { items.first }

    public mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i] < items[parent] else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    public mutating func popMin() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return top }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l] < items[m] { m = l }
            if r < items.count && items[r] < items[m] { m = r }
            guard m != i else { return top }
            items.swapAt(i, m)
            i = m
        }
    }
}

extension MinHeap: Sendable where Element: Sendable {}

/// A timer per key: `schedule` (again) and `takeDue`. A key has at most one live deadline; an
/// older one left in the heap is recognised by its generation and skipped.
public struct Deadlines<Key: Hashable> {
    struct Entry: Comparable {
        var at: Double
        var generation: Int
        var key: Key
        static func < (a: Entry, b: Entry) -> Bool { a.at != b.at ? a.at < b.at : a.generation < b.generation }
        static func == (a: Entry, b: Entry) -> Bool { a.at == b.at && a.generation == b.generation }
    }

    private var heap = MinHeap<Entry>()
    private var live: [Key: Int] = [:]
    private var generation = 0

    public init() {}

    /// Keys with a deadline.
    public var count: Int { live.count }

    /// Sets (or moves) the key's deadline.
    public mutating func schedule(_ key: Key, at t: Double) {
        generation += 1
        live[key] = generation
        heap.push(Entry(at: t, generation: generation, key: key))
    }

    public mutating func cancel(_ key: Key) { live[key] = nil }

    /// The keys whose deadline is at or before `t`, earliest first, with their deadlines; each
    /// loses its deadline.
    public mutating func takeDue(at t: Double) -> [(key: Key, at: Double)] {
        var due: [(key: Key, at: Double)] = []
        while let top = heap.min, top.at <= t {
            heap.popMin()
            guard live[top.key] == top.generation else { continue }
            live[top.key] = nil
            due.append((top.key, top.at))
        }
        // Stale entries are dropped when they surface; rebuild if they dominate the heap.
        if heap.count > 64 && heap.count > 4 * live.count { compact() }
        return due
    }

    private mutating func compact() {
        var fresh = MinHeap<Entry>()
        var pending: [Entry] = []
        while let e = heap.popMin() {
            if live[e.key] == e.generation { pending.append(e) }
        }
        for e in pending { fresh.push(e) }
        heap = fresh
    }
}

/// Workers grouped by credit left (1…`maxCredit`), so that the freest is found by looking at the
/// top buckets instead of at every worker. A worker's bucket and place in it are kept on the
/// worker; `update` moves it after its credit changed.
struct CreditIndex {
    private var buckets: [[LeaseBook.Worker]]
    /// No bucket above this one holds a worker.
    private var top = 0

    init(maxCredit: Int) { buckets = Array(repeating: [], count: maxCredit + 1) }

    /// Puts the worker in the bucket of its current credit (none when it has none left).
    mutating func update(_ w: LeaseBook.Worker) {
        let credit = min(w.free, buckets.count - 1)
        guard credit != w.creditBucket || (credit > 0 && w.creditPlace < 0) else { return }
        remove(w)
        guard credit > 0 else { return }
        w.creditBucket = credit
        w.creditPlace = buckets[credit].count
        buckets[credit].append(w)
        top = max(top, credit)
    }

    mutating func remove(_ w: LeaseBook.Worker) {
        guard w.creditPlace >= 0 else { return }
        let b = w.creditBucket
        let last = buckets[b].removeLast()
        if last !== w {
            buckets[b][w.creditPlace] = last
            last.creditPlace = w.creditPlace
        }
        w.creditPlace = -1
        w.creditBucket = 0
    }

    /// A worker with the most credit left, if any has some.
    mutating func freest() -> LeaseBook.Worker? {
        while top > 0 {
            if let w = buckets[top].last { return w }
            top -= 1
        }
        return nil
    }
}

/// Entries kept in order in blocks of bounded size: insertion, removal and the rank of an entry
/// cost O(√n)-ish work (a block's shift plus a pass over the block sizes) instead of O(n).
/// ASHA's rungs (`SuccessiveHalving`) hold one of these per rung.
struct BlockedRanking<Element: Comparable & Sendable>: Sendable {
    /// Each block sorted; every entry of block i precedes every entry of block i + 1.
    private var blocks: [[Element]] = []
    static var blockSize: Int { 512 }
    private(set) var count = 0

    init() {}

    private func precedes(_ a: Element, _ b: Element) -> Bool { a < b }

    /// The first block whose last entry does not precede `e` (where `e` belongs), or the last block.
    private func block(for e: Element) -> Int {
        var low = 0, high = blocks.count - 1
        while low < high {
            let mid = (low + high) / 2
            if precedes(blocks[mid].last!, e) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The place of `e` in block b: the number of its entries that precede `e`.
    private func place(_ e: Element, in b: Int) -> Int {
        var low = 0, high = blocks[b].count
        while low < high {
            let mid = (low + high) / 2
            if precedes(blocks[b][mid], e) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insert(_ e: Element) {
        count += 1
        guard !blocks.isEmpty else {
            blocks = [[e]]
            return
        }
        let b = block(for: e)
        blocks[b].insert(e, at: place(e, in: b))
        if blocks[b].count > 2 * Self.blockSize {
            let tail = Array(blocks[b][Self.blockSize...])
            blocks[b].removeLast(blocks[b].count - Self.blockSize)
            blocks.insert(tail, at: b + 1)
        }
    }

    /// Removes the entry equal to `e` in the order (neither precedes the other), if present.
    mutating func remove(_ e: Element) {
        guard !blocks.isEmpty else { return }
        let b = block(for: e)
        let i = place(e, in: b)
        guard i < blocks[b].count, !precedes(e, blocks[b][i]) else { return }
        blocks[b].remove(at: i)
        count -= 1
        if blocks[b].isEmpty { blocks.remove(at: b) }
    }

    /// How many entries precede `e`.
    func rank(of e: Element) -> Int {
        guard !blocks.isEmpty else { return 0 }
        let b = block(for: e)
        var n = 0
        for k in 0..<b { n += blocks[k].count }
        return n + place(e, in: b)
    }

    /// Every entry in order (O(n): for reports, not for the event loop).
    var all: [Element] { blocks.flatMap { $0 } }
}
