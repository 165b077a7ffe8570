import Linalg

/// Seeded augmentation of training images (`augment_crop`, `augment_flip`), applied to each
/// batch as it is gathered, drawing from the trial's data-order stream (so a resumed trial
/// draws the same). A crop by `c` shifts the image by (dy, dx) uniform in [−c, c]², filling
/// with zeros: torchvision's `RandomCrop(size, padding=c)`. The flip is `RandomHorizontalFlip`.
struct Augmentation {
    let crop: Int
    let flip: Bool
    let channels: Int, height: Int, width: Int

    /// Nil when the trial asks for none; an error when it asks for it on data that are not images.
    init?(_ config: TrialConfig, layout: ExampleLayout) throws {
        let crop = try config.int(TrialSchema.data["augment_crop"]), flip = try config.bool(TrialSchema.data["augment_flip"])
        guard crop > 0 || flip else { return nil }
        guard case .image(let c, let h, let w) = layout else {
            throw config.error(crop > 0 ? "augment_crop" : "augment_flip", "augments images; the data are \(layout)s")
        }
        guard crop < min(h, w) else { throw config.error("augment_crop", "must be below the image's \(min(h, w)) pixels") }
        (self.crop, self.flip, self.channels, self.height, self.width) = (crop, flip, c, h, w)
    }

    /// Augments each example (a row of `x`, channel-major) in place.
    func apply<T: BLASScalar>(to x: inout Tensor<T>, rng: inout Xoshiro256) {
        let (h, w) = (height, width), plane = h * w, span = 2 * crop + 1
        var image = [T](repeating: 0, count: channels * plane)
        let examples = x.rows
        x.storage.withUnsafeMutableBufferPointer { rows in
            for r in 0..<examples {
                let row = rows.baseAddress! + r * channels * plane
                let dy = crop > 0 ? Int(rng.next() % UInt64(span)) - crop : 0
                let dx = crop > 0 ? Int(rng.next() % UInt64(span)) - crop : 0
                let mirrored = flip && rng.next() & 1 == 1
                guard dy != 0 || dx != 0 || mirrored else { continue }
                for i in 0..<image.count { image[i] = row[i] }
                for c in 0..<channels {
                    for y in 0..<h {
                        for xo in 0..<w {
                            // The output pixel (y, x) shows the input at (y + dy, x' + dx), x' the
                            // column before the flip.
                            let sx = (mirrored ? w - 1 - xo : xo) + dx, sy = y + dy
                            row[c * plane + y * w + xo] = sy >= 0 && sy < h && sx >= 0 && sx < w ? image[c * plane + sy * w + sx] : 0
                        }
                    }
                }
            }
        }
    }
}

extension TrialConfig {
    /// How a `text:` data set is cut into windows.
    public func textOptions() throws -> TextOptions {
        TextOptions(
            blockSize: try int(TrialSchema.data["block_size"]), characters: try string(TrialSchema.data["tokens"]) == "characters",
            validationFraction: try double(TrialSchema.data["validation_fraction"]))
    }

    /// The text keys apply to text only.
    func checkData(_ data: DataSplits) throws {
        if case .tokens = data.train.layout { return }
        for key in ["block_size", "tokens", "validation_fraction"] where values[key] != nil {
            throw error(key, "applies to text data (data: text:FILE); the data are \(data.train.layout)s")
        }
    }
}
