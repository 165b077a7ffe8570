import Foundation
import Glibc
import HDF5
import TestSupport
import Testing
import Transport

/// CURVE keys, the allow-list, plaintext refusals: the real executables on loopback. Nested in
/// the end-to-end suite so that it runs serialized with it: these tests start processes too,
/// and the timing-sensitive tests of the other suites should not meet more of them at once.
extension SweepEndToEndTests {
    @Suite(.serialized) struct SecurityTests {
        static let sweepText = "name: sec\nbase: {model: quadratic, steps: 3000, optimizer: sgd}\ngrid: {lr: [0.001, 0.002, 0.003]}\n"

        /// A directory with `keys/coordinator.*`, `keys/workers/w1.*` (allowed) and
        /// `keys/other/intruder.*` (not allowed), and the sweep file.
        static func setUp(_ name: String) throws -> String {
            let dir = Harness.temporaryDirectory(name)
            Harness.write(sweepText, to: "\(dir)/s.yaml")
            for (out, names) in [("keys", ["coordinator"]), ("keys/workers", ["w1"]), ("keys/other", ["intruder"])] {
                let p = try Harness.start("sweep-coordinator", ["keys", "--out", "\(dir)/\(out)"] + names, log: "\(dir)/keys.log")
                #expect(Harness.wait(p, timeout: 30) && p.terminationStatus == 0, Comment(rawValue: Harness.read("\(dir)/keys.log")))
            }
            return dir
        }

        /// Starts a CURVE coordinator on a loopback port and waits until it listens.
        static func startCoordinator(_ dir: String, endpoint: String, extra: [String] = []) throws -> Process {
            try Harness.startCoordinator(
                ["\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--key", "\(dir)/keys/coordinator.key_secret", "--allow", "\(dir)/keys/workers"] + extra,
                log: "\(dir)/coordinator.log")
        }

        static func worker(_ dir: String, endpoint: String, name: String, key: String?, serverKey: String? = nil, extra: [String] = []) throws -> Process {
            var args = ["--connect", endpoint, "--name", name, "--give-up-after", "20"] + extra
            if let key { args += ["--key", key, "--server-key", serverKey ?? "\(dir)/keys/coordinator.key"] }
            return try Harness.start("sweep-worker", args, log: "\(dir)/\(name).log")
        }

        static func mode(_ path: String) -> UInt32 { (try? KeyFiles.mode(of: path)) ?? 0 }

        @Test func keysCommandWritesAPrivateSecretKeyAndAShareablePublicKey() throws {
            let dir = Harness.temporaryDirectory("keys")
            let p = try Harness.start("sweep-coordinator", ["keys", "--out", "\(dir)/k", "coordinator", "node01"], log: "\(dir)/out.log")
            #expect(Harness.wait(p, timeout: 30) && p.terminationStatus == 0)
            let output = Harness.read("\(dir)/out.log")
            #expect(Self.mode("\(dir)/k") == 0o700)
            var publicKeys: [String] = []
            for name in ["coordinator", "node01"] {
                let secretPath = "\(dir)/k/\(name).key_secret", publicPath = "\(dir)/k/\(name).key"
                #expect(Self.mode(secretPath) == 0o600)
                #expect(Self.mode(publicPath) == 0o644)
                let pair = try KeyFiles.readSecret(secretPath)
                #expect(try Curve.publicKey(ofSecret: pair.secretKey) == pair.publicKey)
                #expect(try KeyFiles.readPublic(publicPath) == pair.publicKey)
                #expect(!Harness.read(publicPath).contains("secret-key"), "the public file must not hold the secret")
                // The certificate layout czmq and pyzmq read (`zmq.auth.load_certificate`).
                #expect(Harness.read(secretPath).contains("    secret-key = \"\(pair.secretKey)\""))
                #expect(output.contains("\(name): public key \(pair.publicKey)"), Comment(rawValue: output))
                #expect(output.contains("\(dir)/k/\(name).key_secret (secret, mode 0600)"))
                publicKeys.append(pair.publicKey)
            }
            #expect(Set(publicKeys).count == 2)
            // Never silently replaced; --force makes a new pair.
            let again = try Harness.start("sweep-coordinator", ["keys", "--out", "\(dir)/k", "node01"], log: "\(dir)/again.log")
            #expect(Harness.wait(again, timeout: 30) && again.terminationStatus == 1)
            #expect(Harness.read("\(dir)/again.log").contains("\(dir)/k/node01.key already exists"))
            #expect(try KeyFiles.readSecret("\(dir)/k/node01.key_secret").publicKey == publicKeys[1])
            let forced = try Harness.start("sweep-coordinator", ["keys", "--out", "\(dir)/k", "--force", "node01"], log: "\(dir)/forced.log")
            #expect(Harness.wait(forced, timeout: 30) && forced.terminationStatus == 0)
            #expect(try KeyFiles.readSecret("\(dir)/k/node01.key_secret").publicKey != publicKeys[1])
            #expect(Self.mode("\(dir)/k/node01.key_secret") == 0o600)
        }

        @Test func keyFilesWithLoosePermissionsAreRefused() throws {
            let dir = try Self.setUp("loose")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            let secret = "\(dir)/keys/coordinator.key_secret"
            for mode: mode_t in [0o640, 0o604, 0o660] {
                chmod(secret, mode)
                let p = try Self.startCoordinator(dir, endpoint: endpoint)
                #expect(Harness.wait(p, timeout: 30) && p.terminationStatus == 1)
                let log = Harness.read("\(dir)/coordinator.log")
                #expect(log.contains("secret key file \(secret) has mode 0\(String(mode, radix: 8))") && log.contains("chmod 600 \(secret)"), Comment(rawValue: log))
                #expect(!FileManager.default.fileExists(atPath: "\(dir)/out"), "nothing starts with a loose key")
            }
            chmod(secret, 0o600)
            #expect(throws: SecurityError.looseSecretKey(path: "\(dir)/keys/workers/w1.key_secret", mode: 0o644)) {
                chmod("\(dir)/keys/workers/w1.key_secret", 0o644)
                _ = try KeyFiles.readSecret("\(dir)/keys/workers/w1.key_secret")
            }
            let worker = try Self.worker(dir, endpoint: endpoint, name: "w1", key: "\(dir)/keys/workers/w1.key_secret")
            #expect(Harness.wait(worker, timeout: 30) && worker.terminationStatus == 1)
            #expect(Harness.read("\(dir)/w1.log").contains("secret key file \(dir)/keys/workers/w1.key_secret has mode 0644"))
            // An allow-list others can write would let anyone add a key.
            chmod("\(dir)/keys/workers/w1.key", 0o666)
            let p = try Self.startCoordinator(dir, endpoint: endpoint)
            #expect(Harness.wait(p, timeout: 30) && p.terminationStatus == 1)
            #expect(Harness.read("\(dir)/coordinator.log").contains("allow-list \(dir)/keys/workers/w1.key has mode 0666"))
        }

        @Test func anAuthorisedCurveWorkerCompletesASweep() throws {
            let dir = try Self.setUp("curve")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            let coordinator = try Self.startCoordinator(dir, endpoint: endpoint)
            let worker = try Self.worker(dir, endpoint: endpoint, name: "w1", key: "\(dir)/keys/workers/w1.key_secret")
            defer { Harness.stop(coordinator, worker) }
            #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("(CURVE)") && log.contains("authenticated worker key 'w1' from 127.0.0.1") && log.contains("sweep sec: 3 done"))
            #expect(!log.contains("refused"), Comment(rawValue: log))
            #expect(Harness.wait(worker, timeout: 30) && worker.terminationStatus == 0)
            #expect(Harness.read("\(dir)/w1.log").contains("CURVE handshake with \(endpoint) succeeded"))
            let rows = try Harness.trials("\(dir)/out")
            #expect(rows.count == 3 && rows.allSatisfy { $0.status == "done" })
        }

        @Test func anUnauthorisedKeyIsRefusedWhileAnAuthorisedWorkerCompletes() throws {
            let dir = try Self.setUp("intruder")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            let coordinator = try Self.startCoordinator(dir, endpoint: endpoint)
            var worker: Process?
            defer { Harness.stop(coordinator, worker) }
            // The intruder knows the coordinator's public key but its own key is not allowed.
            let intruder = try Self.worker(dir, endpoint: endpoint, name: "intruder", key: "\(dir)/keys/other/intruder.key_secret")
            #expect(Harness.wait(intruder, timeout: 30) && intruder.terminationStatus == 1, Comment(rawValue: Harness.read("\(dir)/intruder.log")))
            let intruderKey = try KeyFiles.readPublic("\(dir)/keys/other/intruder.key")
            #expect(Harness.read("\(dir)/intruder.log").contains("refused this worker's key \(intruderKey)"))
            worker = try Self.worker(dir, endpoint: endpoint, name: "w1", key: "\(dir)/keys/workers/w1.key_secret")
            #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("refused a connection from 127.0.0.1: CURVE key \(intruderKey) is not in the allow-list"), Comment(rawValue: log))
            #expect(!log.contains("worker intruder on"), "the intruder never registered")
            // Counted in the summary (the intruder stops at its first refusal; libzmq may have retried once).
            let refused = log.split(separator: "\n").compactMap { line -> Int? in
                let words = line.split(separator: " ")
                return words.count > 2 && words[0] == "refused" && words[2].hasPrefix("connection") ? Int(words[1]) : nil
            }.first
            #expect(log.contains("sweep sec: 3 done") && (refused ?? 0) >= 1, Comment(rawValue: log))
            #expect(log.components(separatedBy: " on w1, attempt 1").count - 1 == 3)
            #expect(Harness.wait(worker!, timeout: 30))
        }

        @Test func aPlaintextClientIsRefusedByACurveCoordinator() throws {
            let dir = try Self.setUp("plaintext")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            let coordinator = try Self.startCoordinator(dir, endpoint: endpoint)
            var worker: Process?
            defer { Harness.stop(coordinator, worker) }
            // A worker without keys is told why and stops.
            let plain = try Self.worker(dir, endpoint: endpoint, name: "plain", key: nil)
            #expect(Harness.wait(plain, timeout: 30) && plain.terminationStatus == 1)
            #expect(Harness.read("\(dir)/plain.log").contains("the coordinator at \(endpoint) requires CURVE"), Comment(rawValue: Harness.read("\(dir)/plain.log")))
            // A raw plaintext DEALER speaking the protocol gets nothing back.
            let context = Context()
            let rogue = try Socket(context, .dealer)
            try rogue.connect(endpoint)
            let ready = Ready(name: "rogue", host: "rogue", pid: 1, threads: 1, slots: 1, kernel: "x", version: Protocol.version, running: [], free: 3)
            // While its handshake is failing it may have no pipe to queue into: wait up to 2 s, then
            // give up sending (either way nothing may come back).
            try rogue.set(.sendTimeout(milliseconds: 2000))
            _ = try? rogue.send(try Message.ready(ready).frames())
            #expect(try Poller.poll([.socket(rogue)], timeout: 1500).isEmpty, "a plaintext peer must get no reply")
            rogue.close()
            // Which side of a NULL-versus-CURVE handshake notices first is a race (the other sees the
            // connection close). A raw client that sends a whole ZMTP 3.0 NULL greeting and waits
            // lets the coordinator see the mismatch itself.
            #expect(Self.nullGreetingIsClosed(port: Int(endpoint.split(separator: ":").last!)!))
            worker = try Self.worker(dir, endpoint: endpoint, name: "w1", key: "\(dir)/keys/workers/w1.key_secret")
            #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.range(of: "refused a connection from 127.0.0.1:[0-9]+: it does not use CURVE", options: .regularExpression) != nil, Comment(rawValue: log))
            #expect(!log.contains("worker plain on") && !log.contains("worker rogue on"))
            #expect(log.contains("sweep sec: 3 done"))
            #expect(Harness.wait(worker!, timeout: 30))
        }

        /// Connects over plain TCP, sends a ZMTP 3.0 greeting for the NULL mechanism and reads until
        /// the peer closes (true) or 5 s pass (false).
        static func nullGreetingIsClosed(port: Int) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard connected == 0 else { return false }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var greeting: [UInt8] = [0xFF] + [UInt8](repeating: 0, count: 8) + [0x7F, 3, 0]
            greeting += Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0] + [UInt8](repeating: 0, count: 31)
            // As a client across a network, a moment passes before the greeting arrives: the
            // coordinator's monitor reads the connection's address first.
            usleep(300_000)
            guard greeting.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == 64 else { return false }
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
                if n < 0 { return false }
            }
        }

        /// A worker talks only to the coordinator whose public key it was given: an impostor with
        /// another key pair (even one that would let the worker in) never gets it to register.
        @Test func aWorkerRefusesACoordinatorWithAnotherKey() throws {
            let dir = try Self.setUp("impostor")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            // The impostor runs with the intruder's key pair and allows w1.
            let impostor = try Harness.start(
                "sweep-coordinator",
                ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--key", "\(dir)/keys/other/intruder.key_secret", "--allow", "\(dir)/keys/workers"],
                log: "\(dir)/coordinator.log")
            usleep(500_000)
            let worker = try Self.worker(dir, endpoint: endpoint, name: "w1", key: "\(dir)/keys/workers/w1.key_secret", extra: ["--give-up-after", "4"])
            defer { Harness.stop(impostor, worker) }
            #expect(Harness.wait(worker, timeout: 30))
            let workerLog = Harness.read("\(dir)/w1.log")
            #expect(workerLog.contains("is --server-key the coordinator's public key?") && !workerLog.contains("registered with sweep"), Comment(rawValue: workerLog))
            kill(impostor.processIdentifier, SIGINT)
            #expect(Harness.wait(impostor, timeout: 30))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(log.contains("its CURVE handshake does not decrypt") && !log.contains("worker w1 on"), Comment(rawValue: log))
        }

        /// With CURVE and `--local-workers`, the local workers get an ephemeral key pair (allowed for
        /// this run only, deleted at the end): no set-up.
        @Test func localWorkersOfACurveCoordinatorNeedNoSetUp() throws {
            let dir = try Self.setUp("local-curve")
            let before = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []).filter { $0.hasPrefix("sweep-keys-") }
            let coordinator = try Self.startCoordinator(dir, endpoint: "tcp://127.0.0.1:\(Harness.freePort())", extra: ["--local-workers", "2"])
            defer { Harness.stop(coordinator) }
            #expect(Harness.wait(coordinator, timeout: 120))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("authenticated worker key 'local workers (ephemeral)'") && log.contains("sweep sec: 3 done"), Comment(rawValue: log))
            let after = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []).filter { $0.hasPrefix("sweep-keys-") }
            #expect(after.subtracting(before).isEmpty, "the ephemeral key directory is removed: \(after.subtracting(before))")
        }

        @Test func plaintextOnANetworkAddressIsRefusedUnlessInsecure() throws {
            let dir = Harness.temporaryDirectory("insecure")
            Harness.write(Self.sweepText, to: "\(dir)/s.yaml")
            let port = Harness.freePort()
            for bind in ["tcp://*:\(port)", "tcp://0.0.0.0:\(port)", "tcp://[::]:\(port)"] {
                let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", bind, "--out", "\(dir)/out", "--plain"], log: "\(dir)/refused.log")
                #expect(Harness.wait(p, timeout: 30) && p.terminationStatus == 1)
                let log = Harness.read("\(dir)/refused.log")
                #expect(log.contains("refusing to listen on \(bind) in plaintext: it is not a loopback address") && log.contains("--key") && log.contains("--insecure"), Comment(rawValue: log))
                #expect(!FileManager.default.fileExists(atPath: "\(dir)/out"))
            }
            // A worker refuses before connecting (192.0.2.1 is TEST-NET-1: no packet is sent).
            let w = try Harness.start("sweep-worker", ["--connect", "tcp://192.0.2.1:\(port)", "--give-up-after", "5"], log: "\(dir)/worker.log")
            #expect(Harness.wait(w, timeout: 30) && w.terminationStatus == 1)
            #expect(Harness.read("\(dir)/worker.log").contains("refusing to connect to tcp://192.0.2.1:\(port) in plaintext"))
            // --insecure: allowed, with a warning; local workers still connect over loopback.
            let ok = try Harness.start(
                "sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", "tcp://0.0.0.0:\(port)", "--insecure", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/insecure.log")
            defer { Harness.stop(ok) }
            #expect(Harness.wait(ok, timeout: 120))
            let log = Harness.read("\(dir)/insecure.log")
            #expect(ok.terminationStatus == 0 && log.contains("warning: --insecure") && log.contains("sweep sec: 3 done"), Comment(rawValue: log))
            #expect(Harness.read("\(dir)/out/logs/local-1.log").contains("connecting to tcp://127.0.0.1:\(port)"))
        }

        /// Fail closed: a CURVE socket whose ZAP handler is missing admits nobody, not everybody;
        /// with the gatekeeper an allowed key gets through and another is kept out.
        @Test func withoutItsZapHandlerACurveSocketAdmitsNobody() throws {
            let server = try CurveKeyPair.generate(), allowed = try CurveKeyPair.generate(), other = try CurveKeyPair.generate()
            /// Whether a message from a client with `keys` reaches the server socket.
            func delivered(_ keys: CurveKeyPair, gatekeeper allowList: AllowList?) throws -> Bool {
                let context = Context()
                let router = try Socket(context, .router)
                try router.makeCurveServer(secretKey: server.secretKey, zapDomain: Gatekeeper.domain)
                let gatekeeper = try allowList.map { try Gatekeeper(context: context, socket: router, allowList: $0) }
                defer {
                    router.close()
                    gatekeeper?.stop()
                }
                try router.bind("tcp://127.0.0.1:*")
                let dealer = try Socket(context, .dealer)
                defer { dealer.close() }
                try dealer.makeCurveClient(keys, serverKey: server.publicKey)
                try dealer.set(.sendTimeout(milliseconds: 1000))
                try dealer.connect(router.lastEndpoint)
                _ = try? dealer.send([Array("hello".utf8)])
                return try !Poller.poll([.socket(router)], timeout: 1500).isEmpty
            }
            var list = AllowList()
            list.add(allowed.publicKey, name: "allowed")
            #expect(try !delivered(allowed, gatekeeper: nil), "no ZAP handler: refused")
            #expect(try delivered(allowed, gatekeeper: list))
            #expect(try !delivered(other, gatekeeper: list))
        }

        /// SIGTERM (scancel, a pod's or a unit's stop) must reach the event loops even when
        /// OpenBLAS has started its threads before main (several BLAS threads, as on any
        /// cluster node): the worker says goodbye, the coordinator commits and exits 130.
        @Test func sigtermStopsCleanlyWithBLASThreads() throws {
            let dir = try Self.setUp("sigterm")
            Harness.write("name: sigterm\nbase: {model: mlp, hidden: [32], limit: 20000, test_limit: 500, epochs: 200, optimizer: sgd}\ngrid: {lr: [0.001, 0.002]}\n", to: "\(dir)/s.yaml")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            func start(_ tool: String, _ arguments: [String], log: String) throws -> Process {
                let p = Process()
                p.executableURL = Harness.products.appendingPathComponent(tool)
                p.arguments = arguments
                var environment = ProcessInfo.processInfo.environment
                environment["OPENBLAS_NUM_THREADS"] = "2"
                p.environment = environment
                _ = FileManager.default.createFile(atPath: log, contents: nil)
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
                p.standardOutput = handle
                p.standardError = handle
                // Started with SIGTERM and SIGINT unblocked, as a shell, srun or systemd starts it
                // (the test runner's thread may block them, and the mask is inherited).
                var unblock = sigset_t(), previous = sigset_t()
                sigemptyset(&unblock)
                sigaddset(&unblock, SIGTERM)
                sigaddset(&unblock, SIGINT)
                pthread_sigmask(SIG_UNBLOCK, &unblock, &previous)
                defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
                try p.run()
                return p
            }
            let coordinator = try start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain"], log: "\(dir)/coordinator.log")
            let worker = try start("sweep-worker", ["--connect", endpoint, "--name", "w", "--give-up-after", "20"], log: "\(dir)/w.log")
            defer { Harness.stop(coordinator, worker) }
            var waited = 0.0
            while !Harness.read("\(dir)/coordinator.log").contains("worker w on") && waited < 30 { usleep(50_000); waited += 0.05 }
            usleep(300_000)
            kill(worker.processIdentifier, SIGTERM)
            #expect(Harness.wait(worker, timeout: 30))
            #expect(worker.terminationReason == .exit && worker.terminationStatus == 0, Comment(rawValue: Harness.read("\(dir)/w.log")))
            #expect(Harness.read("\(dir)/w.log").contains("SIGTERM, stopping"))
            waited = 0
            while !Harness.read("\(dir)/coordinator.log").contains("worker w left") && waited < 10 { usleep(50_000); waited += 0.05 }
            kill(coordinator.processIdentifier, SIGTERM)
            #expect(Harness.wait(coordinator, timeout: 30))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationReason == .exit && coordinator.terminationStatus == 130, Comment(rawValue: log))
            #expect(log.contains("worker w left") && log.contains("SIGTERM: no more trials will be handed out"), Comment(rawValue: log))
        }

        @Test func endpointScopes() {
            for e in ["tcp://127.0.0.1:5555", "tcp://127.8.9.10:1", "tcp://localhost:5555", "tcp://[::1]:5555", "tcp://lo:5555", "tcp://127.0.0.1:*", "tcp://[::ffff:127.0.0.1]:9"] {
                #expect(EndpointScope(e) == .loopback, "\(e)")
            }
            for e in ["tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://[::]:5555", "tcp://10.0.0.1:5555", "tcp://node01:5555", "tcp://eth0:5555", "tcp://128.0.0.1:1", "pgm://eth0;239.192.1.1:5555"] {
                #expect(EndpointScope(e) == .network, "\(e)")
            }
            #expect(EndpointScope("ipc:///tmp/sweep") == .local && EndpointScope("inproc://x") == .local)
            #expect(EndpointScope("tcp://10.0.0.2:0;127.0.0.1:5555") == .loopback)
        }

        @Test func allowListFormats() throws {
            let dir = Harness.temporaryDirectory("allow")
            let a = try CurveKeyPair.generate(), b = try CurveKeyPair.generate()
            // '#' is a Z85 character (never the first of a key): it starts a comment only as a word.
            var hash = try CurveKeyPair.generate().publicKey
            while !hash.dropFirst().contains("#") { hash = try CurveKeyPair.generate().publicKey }
            Harness.write("# workers\n\(a.publicKey) node01\n\n\(b.publicKey)   # no name\n\(hash) node 03 # third\n", to: "\(dir)/list")
            chmod("\(dir)/list", 0o644)
            let list = try AllowList.load(["\(dir)/list"])
            #expect(list.keys.count == 3 && list.name(of: a.publicKey) == "node01" && list.name(of: b.publicKey) == "line 4 of list" && list.name(of: hash) == "node 03")
            Harness.write("\(a.publicKey)\nnot-a-key node02\n", to: "\(dir)/bad")
            chmod("\(dir)/bad", 0o644)
            #expect(throws: SecurityError.malformedKeyFile(path: "\(dir)/bad", line: 2, reason: "'not-a-key' is not a 40-character Z85 public key")) {
                _ = try AllowList.load(["\(dir)/bad"])
            }
            try FileManager.default.createDirectory(atPath: "\(dir)/empty", withIntermediateDirectories: true)
            #expect(throws: SecurityError.emptyAllowList(path: "\(dir)/empty")) { _ = try AllowList.load(["\(dir)/empty"]) }
        }
    }
}
