import Learning
import Testing

@Suite struct TrialConfigTests {
    func parse(_ yaml: String) throws -> TrialConfig { try TrialConfig.parse(yaml: yaml, source: "trial.yaml") }

    func error(_ yaml: String) -> ConfigError? {
        do {
            _ = try parse(yaml)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test func parsesTypesAndOverrides() throws {
        let c = try parse("model: mlp\noptimizer: sgd\nlr: 1e-2\nmomentum: 0.9\nnesterov: true\nhidden: [64, 32]\nepochs: 3\n")
        #expect(c.values["lr"] == .double(0.01))
        #expect(c.values["hidden"] == .list([.int(64), .int(32)]))
        #expect(c.values["nesterov"] == .bool(true))
        let o = try c.overriding(["lr=0.5", "hidden=[8]", "activation=tanh"])
        #expect(o.values["lr"] == .double(0.5) && o.values["hidden"] == .list([.int(8)]) && o.values["activation"] == .string("tanh"))
        #expect(c.canonicalJSON == #"{"epochs":3,"hidden":[64,32],"lr":0.01,"model":"mlp","momentum":0.9,"nesterov":true,"optimizer":"sgd"}"#)
        #expect(TrialID.of(c) == TrialID.of(try parse("optimizer: sgd\nepochs: 3\nmodel: mlp\nnesterov: true\nlr: 0.01\nhidden: [64, 32]\nmomentum: 0.9\n")))
        #expect(TrialID.of(c) != TrialID.of(o))
    }

    @Test func misspelledKeyNamesFileLineAndSuggestion() throws {
        let e = try #require(error("model: mlp\noptimizer: sgd\nmomentun: 0.9\n"))
        #expect(e.location.file == "trial.yaml" && e.location.line == 3 && e.key == "momentun")
        #expect(e.description.contains("did you mean 'momentum'"))
        #expect(e.description.hasPrefix("trial.yaml:3: 'momentun': unknown key"))
    }

    @Test func keyOfAnotherOptimizerIsExplained() throws {
        let e = try #require(error("model: mlp\noptimizer: adamw\nmomentum: 0.9\n"))
        #expect(e.key == "momentum" && e.message.contains("does not apply to optimizer 'adamw'"))
    }

    @Test func unknownOptimizerAndModelListAlternatives() throws {
        let e = try #require(error("model: mlp\noptimizer: adamx\n"))
        #expect(e.location.line == 2 && e.message.contains("unknown optimizer 'adamx'") && e.message.contains("adamw"))
        let m = try #require(error("model: transformer\n"))
        #expect(m.message.contains("unknown model") && m.message.contains("vae"))
        let none = try #require(error("optimizer: sgd\n"))
        #expect(none.message.contains("needs 'model'"))
    }

    @Test func wrongTypesAndRanges() throws {
        #expect(try #require(error("model: mlp\nlr: fast\n")).message.contains("expected a number, got string fast"))
        #expect(try #require(error("model: mlp\nepochs: 0\n")).message.contains("at least 1"))
        #expect(try #require(error("model: mlp\nhidden: [64, x]\n")).message.contains("list of integers"))
        #expect(try #require(error("model: mlp\noptimizer: adam\nbeta2: 1.5\n")).message.contains("[0, 1)"))
        #expect(try #require(error("model: mlp\noptimizer: adam\nbeta2: 1\n")).message.contains("[0, 1)"))
        #expect(try parse("model: mlp\noptimizer: shampoo\nbeta2: 1\n").values["beta2"] == .int(1))
        #expect(try #require(error("model: mlp\nactivation: swish\n")).message.contains("relu, tanh, gelu, sigmoid"))
        #expect(try #require(error("model: mlp\nlr: -1\n")).message.contains("positive"))
        #expect(try #require(error("model: mlp\noptimizer: sgd\nnesterov: true\n")).message.contains("momentum > 0"))
        #expect(try #require(error("model: mlp\ndata: imagenet\n")).message.contains("unknown data set"))
        #expect(try #require(error("model: mlp\nlr: [1, \n")).message.contains("invalid YAML"))
        #expect(try #require(error("model: mlp\nlr: 0.1\nlr: 0.2\n")).message.contains("given twice"))
    }

    @Test func dataKeysDoNotApplyToToyObjectives() throws {
        let e = try #require(error("model: rosenbrock\noptimizer: adam\nepochs: 3\n"))
        #expect(e.key == "epochs" && e.message.contains("model 'rosenbrock'"))
    }
}
