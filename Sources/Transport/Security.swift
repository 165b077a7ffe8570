import CZeroMQ
import Foundation
import Glibc

/// What went wrong with keys, allow-lists or the choice between CURVE and plaintext, and what to
/// do about it.
public enum SecurityError: Error, CustomStringConvertible, Equatable {
    /// This libzmq was built without CURVE (libsodium).
    case curveUnavailable
    /// A secret key file that group or others may read (or write).
    case looseSecretKey(path: String, mode: UInt32)
    /// An allow-list file others could add keys to.
    case writableAllowList(path: String, mode: UInt32)
    case unreadable(path: String, reason: String)
    case malformedKeyFile(path: String, line: Int?, reason: String)
    /// A certificate whose public key does not belong to its secret key.
    case mismatchedKeyPair(path: String)
    case emptyAllowList(path: String)
    case alreadyExists(path: String)
    /// Plain TCP on an address other hosts can reach, without `--insecure`.
    case plaintextOnNetwork(endpoint: String, role: Role)
    /// `--insecure` together with keys: one or the other.
    case insecureWithKeys
    /// libzmq ignored ZMQ_ZAP_ENFORCE_DOMAIN: a missing ZAP handler would let anyone in.
    case zapEnforcementUnsupported
    /// The coordinator's ZAP handler refused this worker's key (status 400).
    case refusedByCoordinator(endpoint: String, publicKey: String)
    /// One side speaks CURVE and the other plaintext.
    case mechanismMismatch(endpoint: String, workerUsesCurve: Bool)

    public enum Role: Sendable { case coordinator, worker }

    public var description: String {
        switch self {
        case .curveUnavailable:
            "this libzmq has no CURVE support (zmq_has(\"curve\") is false): install a libzmq built with libsodium (Debian's libzmq5 is)"
        case .looseSecretKey(let path, let mode):
            "secret key file \(path) has mode \(octal(mode)): group or others may read it; a secret key must be private to its owner (chmod 600 \(path))"
        case .writableAllowList(let path, let mode):
            "allow-list \(path) has mode \(octal(mode)): group or others may write it and so let any worker in (chmod go-w \(path))"
        case .unreadable(let path, let reason):
            "cannot read \(path): \(reason)"
        case .malformedKeyFile(let path, let line, let reason):
            "\(path)\(line.map { ":\($0)" } ?? ""): \(reason)"
        case .mismatchedKeyPair(let path):
            "\(path): its public-key is not the public key of its secret-key"
        case .emptyAllowList(let path):
            "allow-list \(path) holds no worker keys (expected *.key certificates written by `sweep-coordinator keys`, or lines 'KEY [NAME]'); with no keys no worker could join"
        case .alreadyExists(let path):
            "\(path) already exists; remove it or pass --force to replace the key pair"
        case .plaintextOnNetwork(let endpoint, .coordinator):
            "refusing to listen on \(endpoint) in plaintext: it is not a loopback address, so anyone who can reach it could join the sweep and read its traffic. Give --key (the coordinator's secret key) and --allow (the workers' public keys), see README \"Security\"; or --insecure to run unauthenticated and unencrypted anyway"
        case .plaintextOnNetwork(let endpoint, .worker):
            "refusing to connect to \(endpoint) in plaintext: it is not a loopback address. Give --key (this worker's secret key) and --server-key (the coordinator's public key), see README \"Security\"; or --insecure if the coordinator runs with --insecure"
        case .insecureWithKeys:
            "--insecure turns CURVE off: give either keys or --insecure, not both"
        case .zapEnforcementUnsupported:
            "this libzmq does not enforce the ZAP domain (ZMQ_ZAP_ENFORCE_DOMAIN), so the allow-list could be bypassed; use libzmq 4.3 or later"
        case .refusedByCoordinator(let endpoint, let key):
            "the coordinator at \(endpoint) refused this worker's key \(key): add the worker's .key file to the coordinator's --allow list"
        case .mechanismMismatch(let endpoint, true):
            "the coordinator at \(endpoint) does not use CURVE but this worker does (--key): start the coordinator with --key and --allow, or drop this worker's keys"
        case .mechanismMismatch(let endpoint, false):
            "the coordinator at \(endpoint) requires CURVE: give this worker --key (its secret key, allowed by the coordinator) and --server-key (the coordinator's public key)"
        }
    }
}

func octal(_ mode: UInt32) -> String { String(format: "%04o", mode & 0o7777) }

/// CURVE keys as Z85 text (40 characters for 32 bytes), as libzmq and pyzmq write them.
public enum Curve {
    public static var isAvailable: Bool { zmq_has("curve") != 0 }

    public static func requireAvailable() throws {
        guard isAvailable else { throw SecurityError.curveUnavailable }
    }

    /// The 32 bytes of a Z85 key, or nil if it is not 40 valid Z85 characters.
    public static func decode(_ z85: String) -> [UInt8]? {
        guard z85.utf8.count == 40 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&bytes, z85) != nil else { return nil }
        // zmq_z85_decode accepts some out-of-alphabet characters; a key must round-trip.
        guard encode(bytes) == z85 else { return nil }
        return bytes
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count % 4 == 0)
        var text = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        _ = zmq_z85_encode(&text, bytes, bytes.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The public key of a secret key.
    public static func publicKey(ofSecret secret: String) throws -> String {
        var text = [CChar](repeating: 0, count: 41)
        try check("zmq_curve_public", zmq_curve_public(&text, secret))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A CURVE key pair (Z85).
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A new key pair from libsodium's generator (zmq_curve_keypair).
    public static func generate() throws -> CurveKeyPair {
        try Curve.requireAvailable()
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        try check("zmq_curve_keypair", zmq_curve_keypair(&pub, &sec))
        func text(_ c: [CChar]) -> String { String(decoding: c.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CurveKeyPair(publicKey: text(pub), secretKey: text(sec))
    }
}

/// Key files in the certificate format of czmq and pyzmq (`zmq.auth.load_certificate` reads
/// them): `NAME.key` holds the public key and may be shared; `NAME.key_secret` holds both keys and
/// must be readable by its owner only.
public enum KeyFiles {
    public struct Written: Sendable {
        public let name: String
        public let publicKey: String
        public let publicPath: String
        public let secretPath: String
    }

    /// Writes `NAME.key` (mode 0644) and `NAME.key_secret` (0600) in `directory` (created 0700
    /// if missing). Refuses to replace existing files unless `force`.
    public static func write(_ pair: CurveKeyPair, name: String, directory: String, force: Bool = false) throws -> Written {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw SecurityError.malformedKeyFile(path: name, line: nil, reason: "a key name must be a plain file name (no '/', not starting with '.')")
        }
        if !FileManager.default.fileExists(atPath: directory) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let publicPath = "\(directory)/\(name).key"
        let secretPath = "\(directory)/\(name).key_secret"
        for path in [publicPath, secretPath] where FileManager.default.fileExists(atPath: path) {
            guard force else { throw SecurityError.alreadyExists(path: path) }
            unlink(path)
        }
        let header = "#   ****  Generated by sweep-coordinator keys  ****\n"
        try create(
            secretPath, mode: 0o600,
            text: header + """
                #   ZeroMQ CURVE **Secret** Certificate
                #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

                metadata
                    name = "\(name)"
                curve
                    public-key = "\(pair.publicKey)"
                    secret-key = "\(pair.secretKey)"

                """)
        try create(
            publicPath, mode: 0o644,
            text: header + """
                #   ZeroMQ CURVE Public Certificate
                #   Exchange securely, or use a secure mechanism to verify the contents
                #   of this file after exchange. Store public certificates in your home
                #   directory, in the .curve subdirectory.

                metadata
                    name = "\(name)"
                curve
                    public-key = "\(pair.publicKey)"

                """)
        return Written(name: name, publicKey: pair.publicKey, publicPath: publicPath, secretPath: secretPath)
    }

    /// Creates a file that did not exist with exactly `mode` (whatever the umask), durably.
    static func create(_ path: String, mode: mode_t, text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SecurityError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw SecurityError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else { throw SecurityError.unreadable(path: path, reason: String(cString: strerror(errno))) }
    }

    /// The permission bits of `path` (following symbolic links, as Kubernetes mounts Secrets).
    public static func mode(of path: String) throws -> UInt32 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SecurityError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        return UInt32(st.st_mode) & 0o7777
    }

    /// Reads a secret certificate (`NAME.key_secret`), refusing files group or others can access.
    public static func readSecret(_ path: String) throws -> CurveKeyPair {
        try Curve.requireAvailable()
        let mode = try mode(of: path)
        guard mode & 0o077 == 0 else { throw SecurityError.looseSecretKey(path: path, mode: mode) }
        let fields = try parse(path)
        guard let secret = fields.secret else {
            throw SecurityError.malformedKeyFile(path: path, line: nil, reason: "no secret-key line: this is a public certificate (NAME.key); give the NAME.key_secret file")
        }
        let derived = try Curve.publicKey(ofSecret: secret)
        if let pub = fields.public, pub != derived { throw SecurityError.mismatchedKeyPair(path: path) }
        return CurveKeyPair(publicKey: derived, secretKey: secret)
    }

    /// Reads a public key: a certificate file (`NAME.key`, or a secret one) or the key itself (40
    /// Z85 characters).
    public static func readPublic(_ pathOrKey: String) throws -> String {
        if pathOrKey.utf8.count == 40, Curve.decode(pathOrKey) != nil, !FileManager.default.fileExists(atPath: pathOrKey) { return pathOrKey }
        guard FileManager.default.fileExists(atPath: pathOrKey) else {
            throw SecurityError.unreadable(path: pathOrKey, reason: "no such file (expected a .key certificate or a 40-character Z85 public key)")
        }
        guard let pub = try parse(pathOrKey).public else {
            throw SecurityError.malformedKeyFile(path: pathOrKey, line: nil, reason: "no public-key line")
        }
        return pub
    }

    /// The `public-key` and `secret-key` lines of a certificate, each checked to be a Z85 key.
    static func parse(_ path: String) throws -> (public: String?, secret: String?) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw SecurityError.unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        var pub: String?
        var sec: String?
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            for field in ["public-key", "secret-key"] where line.hasPrefix(field) {
                guard let eq = line.firstIndex(of: "=") else { continue }
                let value = line[line.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t\"'"))
                guard Curve.decode(value) != nil else {
                    throw SecurityError.malformedKeyFile(path: path, line: n + 1, reason: "\(field) is not a 40-character Z85 key")
                }
                if field == "public-key" { pub = value } else { sec = value }
            }
        }
        if pub == nil && sec == nil {
            throw SecurityError.malformedKeyFile(path: path, line: nil, reason: "not a CURVE certificate (no public-key or secret-key line)")
        }
        return (pub, sec)
    }
}

/// The worker public keys a CURVE coordinator lets in, each with a name for its logs.
public struct AllowList: Sendable, Equatable {
    /// Z85 public key → name.
    public private(set) var keys: [String: String] = [:]
    /// Where the keys came from, for log lines.
    public private(set) var sources: [String] = []

    public init() {}

    public mutating func add(_ publicKey: String, name: String) { keys[publicKey] = name }

    public func name(of publicKey: String) -> String? { keys[publicKey] }

    /// Loads each path: a directory (every `*.key` certificate in it, named after the file), a
    /// certificate file, or a file of lines `KEY [NAME]` (`#` starts a comment). Files and
    /// directories that group or others may write are refused: anyone who can write the list can
    /// let a worker in.
    public static func load(_ paths: [String]) throws -> AllowList {
        var list = AllowList()
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw SecurityError.unreadable(path: path, reason: "no such file or directory")
            }
            let before = list.keys.count
            if isDirectory.boolValue {
                // Whoever may write the directory may add a key file to it.
                try checkNotWritable(path)
                let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".key") }.sorted()
                for file in names {
                    let full = "\(path)/\(file)"
                    try checkNotWritable(full)
                    list.add(try KeyFiles.readPublic(full), name: String(file.dropLast(4)))
                }
            } else {
                try checkNotWritable(path)
                try list.loadFile(path)
            }
            guard list.keys.count > before else { throw SecurityError.emptyAllowList(path: path) }
            list.sources.append(path)
        }
        return list
    }

    static func checkNotWritable(_ path: String) throws {
        let mode = try KeyFiles.mode(of: path)
        guard mode & 0o022 == 0 else { throw SecurityError.writableAllowList(path: path, mode: mode) }
    }

    mutating func loadFile(_ path: String) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw SecurityError.unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        if text.contains("public-key") {
            let fileName = (path as NSString).lastPathComponent
            add(try KeyFiles.readPublic(path), name: fileName.hasSuffix(".key") ? String(fileName.dropLast(4)) : fileName)
            return
        }
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // '#' is also a Z85 character, though never the first of a key (it would exceed 32
            // bits): a comment is a word that starts with it.
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).prefix { !$0.hasPrefix("#") }.map(String.init)
            guard let key = words.first else { continue }
            guard Curve.decode(key) != nil else {
                throw SecurityError.malformedKeyFile(path: path, line: n + 1, reason: "'\(key)' is not a 40-character Z85 public key")
            }
            add(key, name: words.count > 1 ? words.dropFirst().joined(separator: " ") : "line \(n + 1) of \((path as NSString).lastPathComponent)")
        }
    }
}

/// Where an endpoint can be reached from: this host only (loopback, ipc, inproc) or the network.
public enum EndpointScope: Sendable, Equatable {
    case loopback, local, network

    public init(_ endpoint: String) {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") {
            self = .local
            return
        }
        guard endpoint.hasPrefix("tcp://") else {
            self = .network
            return
        }
        var address = String(endpoint.dropFirst(6))
        // tcp://SOURCE;DESTINATION (connect): the destination is what matters.
        if let semicolon = address.lastIndex(of: ";") { address = String(address[address.index(after: semicolon)...]) }
        var host = address
        if let colon = address.lastIndex(of: ":") { host = String(address[..<colon]) }
        host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        self = Self.isLoopback(host) ? .loopback : .network
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "lo" || host == "::1" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            // ::ffff:127.x.x.x
            let b = withUnsafeBytes(of: v6) { Array($0) }
            return b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF && b[12] == 127
        }
        return false
    }

    /// Plain TCP is allowed on loopback and local transports, elsewhere only with `insecure`.
    public static func checkPlaintext(_ endpoint: String, role: SecurityError.Role, insecure: Bool) throws {
        guard EndpointScope(endpoint) == .network, !insecure else { return }
        throw SecurityError.plaintextOnNetwork(endpoint: endpoint, role: role)
    }
}

extension Socket {
    /// CURVE server: encrypts everything and asks the ZAP handler of `zapDomain` about every
    /// client key. With the domain enforced, a missing handler refuses every client.
    public func makeCurveServer(secretKey: String, zapDomain: String) throws {
        try Curve.requireAvailable()
        try setOption(ZMQ_CURVE_SERVER, Int32(1))
        try setOption(ZMQ_CURVE_SECRETKEY, string: secretKey)
        try setOption(ZMQ_ZAP_DOMAIN, string: zapDomain)
        try setOption(csweep_zap_enforce_domain(), Int32(1))
        guard try intOption(csweep_zap_enforce_domain()) == 1 else { throw SecurityError.zapEnforcementUnsupported }
    }

    /// CURVE client: talks only to the server holding the secret key of `serverKey`.
    public func makeCurveClient(_ keys: CurveKeyPair, serverKey: String) throws {
        try Curve.requireAvailable()
        try setOption(ZMQ_CURVE_SERVERKEY, string: serverKey)
        try setOption(ZMQ_CURVE_PUBLICKEY, string: keys.publicKey)
        try setOption(ZMQ_CURVE_SECRETKEY, string: keys.secretKey)
    }
}

/// The peer address of a connected socket descriptor, "HOST:PORT".
func peerAddress(_ fd: Int32) -> String? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let ok = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
    }
    guard ok else { return nil }
    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
    var port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
    let rc = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getnameinfo($0, length, &host, socklen_t(host.count), &port, socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
    }
    guard rc == 0 else { return nil }
    func text(_ c: [CChar]) -> String { String(decoding: c.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    let h = text(host)
    return h.contains(":") ? "[\(h)]:\(text(port))" : "\(h):\(text(port))"
}
