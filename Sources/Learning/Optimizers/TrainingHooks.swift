import Linalg

// Optimizers that need more from the training loop than one gradient per step say so by
// conforming to one of these protocols; `Trainer` checks for them and does the extra work.

/// Sharpness-aware minimisation (SAM, ASAM): every step evaluates the gradient twice.
///
/// The loop computes the gradient at the current point, calls `perturb` (which moves the
/// parameters to the worst-case neighbour, remembering where they were), computes the gradient
/// again on the same batch at the perturbed point, then calls `update`, which restores the
/// parameters and lets the base optimizer step with the perturbed gradient.
public protocol SharpnessAware<Scalar>: Optimizer {
    func perturb(_ parameters: Parameters<Scalar>)
}

/// Sophia: a diagonal Hessian estimate refreshed every `hessianInterval` steps from a gradient
/// of the loss on labels *sampled from the model's own predictions* (the Gauss–Newton–Bartlett
/// estimator). After the optimizer step the loop asks `wantsHessianEstimate`; when true it
/// fills `parameters.gradients` with that sampled-label gradient (mean over the batch) and
/// calls `updateHessian(parameters, batchSize:)`.
public protocol HessianEstimating<Scalar>: Optimizer {
    /// Whether the step just taken (`step` already counts it) is followed by an estimate.
    var wantsHessianEstimate: Bool { get }
    func updateHessian(_ parameters: Parameters<Scalar>, batchSize: Int)
}

/// Schedule-free optimizers train at one point and should be evaluated at another. The loop
/// calls `useEvaluationPoint` before evaluating (and before saving a model's values for
/// analysis) and `useTrainingPoint` after, so checkpoints always hold the training point and
/// the optimizer state that maps it to the evaluation point.
public protocol EvaluationPointSwapping<Scalar>: Optimizer {
    func useEvaluationPoint(_ parameters: Parameters<Scalar>)
    func useTrainingPoint(_ parameters: Parameters<Scalar>)
}
