/// A trial's stable identity: a hash of its canonical configuration, so that expanding a sweep
/// twice (or after adding values) gives every unchanged trial the same id.
public enum TrialID {
    /// 16 hex digits: FNV-1a-64 over the canonical JSON, then SplitMix64's finaliser so that
    /// configurations differing in one character get unrelated-looking ids.
    public static func of(_ config: TrialConfig) -> String { of(text: config.canonicalJSON) }

    /// The id of a configuration that can occur more than once in a sweep, told apart by `salt`
    /// (population-based training: the member and generation).
    public static func of(_ config: TrialConfig, salt: String) -> String { of(text: config.canonicalJSON + "\u{0}" + salt) }

    static func of(text: String) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
