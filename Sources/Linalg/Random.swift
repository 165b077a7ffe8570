import Glibc

/// A small, fast, seedable generator (xoshiro256**) whose whole state is four words, so a
/// checkpoint can save it and a resumed trial draws exactly the numbers it would have drawn.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Equatable, Codable {
    public var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        // SplitMix64 spreads any seed (0 included) over the full state.
        var z = seed
        func next() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        state = (next(), next(), next(), next())
    }

    /// A generator for a named purpose derived from a seed (`"init"`, `"shuffle"`, `"noise"`),
    /// so that changing how one stream is used never shifts another.
    public init(seed: UInt64, stream: String) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for b in stream.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        self.init(seed: seed ^ h)
    }

    public init(words: [UInt64]) {
        precondition(words.count == 4, "xoshiro256 state is 4 words")
        state = (words[0], words[1], words[2], words[3])
    }

    public var words: [UInt64] { [state.0, state.1, state.2, state.3] }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inlinable func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal draws (Box–Muller, both outputs used).
    public mutating func fillNormal<T: BLASScalar>(_ buffer: UnsafeMutableBufferPointer<T>) {
        var i = 0
        let n = buffer.count
        while i < n {
            let u1 = 1.0 - nextUnit()  // (0, 1]
            let u2 = nextUnit()
            let r = (-2.0 * Double.log(u1)).squareRoot()
            let theta = 2.0 * Double.pi * u2
            buffer[i] = T(r * _cos(theta))
            if i + 1 < n { buffer[i + 1] = T(r * _sin(theta)) }
            i += 2
        }
    }

    /// Uniform in [low, high).
    public mutating func fillUniform<T: BLASScalar>(_ buffer: UnsafeMutableBufferPointer<T>, low: Double, high: Double) {
        for i in buffer.indices { buffer[i] = T(low + (high - low) * nextUnit()) }
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            p.swapAt(i, j)
        }
        return p
    }

    public static func == (a: Xoshiro256, b: Xoshiro256) -> Bool { a.words == b.words }

    public init(from decoder: any Decoder) throws {
        let words = try [UInt64](from: decoder)
        guard words.count == 4 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "xoshiro256 state needs 4 words"))
        }
        self.init(words: words)
    }

    public func encode(to encoder: any Encoder) throws { try words.encode(to: encoder) }
}

@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
