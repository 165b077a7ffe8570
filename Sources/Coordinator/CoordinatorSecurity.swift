import Foundation
import Glibc
import Transport

/// The coordinator's CURVE identity and the worker keys it lets in.
public struct CurveServer: Sendable {
    public var keys: CurveKeyPair
    public var allowList: AllowList

    public init(keys: CurveKeyPair, allowList: AllowList) {
        self.keys = keys
        self.allowList = allowList
    }
}

extension Coordinator {
    /// Before the router binds: refuses plaintext on a network address (unless `insecure`), or
    /// makes the router a CURVE server behind the allow-list; starts the gatekeeper thread (ZAP
    /// handler and connection monitor) in both cases, so refused connections are logged.
    ///
    /// Local workers need no set-up: in plaintext they connect over loopback; with CURVE they get
    /// an ephemeral key pair, made for this run and allowed for this run only.
    func secure(_ router: Socket, context: Context, bind: String) throws -> Gatekeeper {
        try Self.checkSecurityOptions(options)
        guard let curve = options.curve else {
            if EndpointScope(bind) == .network {
                log("warning: --insecure: workers on \(bind) join unauthenticated and the traffic is not encrypted")
                if EndpointScope(connectable(bind)) == .network { localWorkerSecurity.arguments = ["--insecure"] }
            }
            return try Gatekeeper(context: context, socket: router, allowList: nil)
        }
        var allowList = curve.allowList
        let gatekeeper: Gatekeeper
        do {
            if options.localWorkers > 0 {
                let ephemeral = try CurveKeyPair.generate()
                let directory = try makePrivateTemporaryDirectory()
                localWorkerSecurity.directory = directory
                let written = try KeyFiles.write(ephemeral, name: "local-workers", directory: directory)
                allowList.add(ephemeral.publicKey, name: "local workers (ephemeral)")
                // `=`: a Z85 key may start with '-'.
                localWorkerSecurity.arguments = ["--key", written.secretPath, "--server-key=\(curve.keys.publicKey)"]
            }
            try router.makeCurveServer(secretKey: curve.keys.secretKey, zapDomain: Gatekeeper.domain)
            gatekeeper = try Gatekeeper(context: context, socket: router, allowList: allowList)
        } catch {
            removeLocalWorkerKeys()
            throw error
        }
        log(
            "CURVE: coordinator public key \(curve.keys.publicKey); \(curve.allowList.keys.count) worker key\(curve.allowList.keys.count == 1 ? "" : "s") allowed (\(curve.allowList.sources.joined(separator: ", ")))"
        )
        return gatekeeper
    }

    /// Plaintext on a network address without `insecure`, or `insecure` with keys: refused
    /// before anything is created.
    static func checkSecurityOptions(_ options: Options) throws {
        if options.curve == nil {
            try EndpointScope.checkPlaintext(options.bind ?? "tcp://127.0.0.1:*", role: .coordinator, insecure: options.insecure)
        } else if options.insecure {
            throw SecurityError.insecureWithKeys
        }
    }

    /// Logs what the gatekeeper saw; throws if its thread failed (no worker could join any more).
    func report(_ gatekeeper: Gatekeeper) throws {
        let report = try gatekeeper.take()
        refusedConnections += report.refused
        for line in report.lines { log(line) }
    }

    func removeLocalWorkerKeys() {
        guard let directory = localWorkerSecurity.directory else { return }
        try? FileManager.default.removeItem(atPath: directory)
        localWorkerSecurity.directory = nil
    }
}

/// A new directory only this user can enter (mkdtemp creates it 0700).
func makePrivateTemporaryDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "sweep-keys-XXXXXX").utf8CString)
    guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw SecurityError.unreadable(path: NSTemporaryDirectory(), reason: "mkdtemp: \(String(cString: strerror(errno)))")
    }
    return String(cString: path)
}
