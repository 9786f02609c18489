//! Model bytes: a trained model in a caller buffer, and back.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `b"MSDEMODL"` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 4 | bytes per parameter (4 = f32, 8 = f64) |
//! | 4 | number of config words `W` (30; 29 in version 2, 28 in version 1) |
//! | 8·W | config words (`u64`; reals as IEEE-754 f64 bits): [`Config`] fields in declaration order except `time_scale` and `drift_teacher`, which come last in that order (version 2 added `time_scale`, version 3 `drift_teacher`; older files load with `time_scale = 1` and `DriftTeacher::Chord`) |
//! | 8 | parameter count `P` |
//! | P·(4 or 8) | parameters (layout of [`Layout::new`], the input block of [`crate::model::inputs`] first; versions 1–3 have no input block and load with the identity standardisation and no time span, i.e. exactly the model they were) |
//! | 8 | FNV-1a-64 of every byte before it |
//!
//! Loading checks, in order: length for the header (truncated), magic
//! (foreign bytes), version, float width, total length (truncated),
//! checksum (corrupted), config (decodable and valid), parameter count
//! (consistent with the config), finiteness, the input block (scales > 0,
//! `t_min ≤ t_max`). Nothing is written to the output before every check
//! has passed.

use crate::error::{Detail, Error, ErrorKind, Result, check_finite, check_len};
use crate::float::Float;
use crate::model::{
    Config, DEFAULT_RANK, DiffusionHead, DriftLoss, DriftTeacher, Inputs, Layout, MassWeighting,
    Residual, TargetMode,
};

/// First eight bytes of every model.
pub const MAGIC: [u8; 8] = *b"MSDEMODL";
/// Version of this layout (written by [`save`]); [`load`] also reads
/// versions 3 (no input block), 2 (nor a `drift_teacher` word) and 1 (nor
/// `time_scale`), any other version is refused.
pub const FORMAT_VERSION: u32 = 4;
/// The first version whose parameters start with the input block.
const INPUT_BLOCK_SINCE: u32 = 4;
/// Config words written by this version.
const CONFIG_WORDS: usize = 30;
/// Config words of versions 2 and 1 (this version's without
/// `drift_teacher`, and without `time_scale` too).
const CONFIG_WORDS_V2: usize = 29;
const CONFIG_WORDS_V1: usize = 28;
const HEADER: usize = 8 + 4 + 4 + 4;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn corrupt(msg: &'static str) -> Error {
    Error::new(ErrorKind::CorruptModel, "bytes", msg)
}

fn config_words(c: &Config) -> [u64; CONFIG_WORDS] {
    [
        c.d as u64,
        c.time_features as u64,
        c.depth as u64,
        c.width as u64,
        c.head.is_some() as u64,
        c.lambda_diff.to_bits(),
        matches!(c.head, Some(DiffusionHead::LowRank { .. })) as u64,
        match c.head {
            Some(DiffusionHead::LowRank { q }) => q as u64,
            _ => DEFAULT_RANK as u64,
        },
        (c.head == Some(DiffusionHead::Diagonal)) as u64,
        c.diffusion_epsilon.to_bits(),
        c.warmup_epochs as u64,
        c.drift_loss as u64,
        c.mass_weighting as u64,
        c.mass_threshold.to_bits(),
        c.target_mode as u64,
        c.residual as u64,
        c.flow_substeps as u64,
        c.k_neighbours as u64,
        c.shrinkage.to_bits(),
        c.target_epsilon.to_bits(),
        c.clip_grad_norm.to_bits(),
        c.clip_trace.to_bits(),
        c.learning_rate.to_bits(),
        c.beta1.to_bits(),
        c.beta2.to_bits(),
        c.adam_epsilon.to_bits(),
        c.weight_decay.to_bits(),
        c.seed,
        c.time_scale.to_bits(),
        c.drift_teacher as u64,
    ]
}

/// The config of `words` (`CONFIG_WORDS`, or the fewer words of an older
/// version: without `drift_teacher` it is [`DriftTeacher::Chord`], without
/// `time_scale` 1).
fn config_from_words(w: &[u64]) -> Result<Config> {
    let count = |v: u64| usize::try_from(v).map_err(|_| corrupt("config count out of range"));
    let flag = |v: u64| match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt("config flag is not 0 or 1")),
    };
    let real = f64::from_bits;
    // The head's words: on, low rank, q (read only for low rank), diagonal.
    let head = match (flag(w[4])?, flag(w[6])?, flag(w[8])?) {
        (false, _, _) => None,
        (true, false, false) => Some(DiffusionHead::Full),
        (true, true, false) => Some(DiffusionHead::LowRank { q: count(w[7])? }),
        (true, false, true) => Some(DiffusionHead::Diagonal),
        (true, true, true) => {
            return Err(Error::new(
                ErrorKind::CorruptModel,
                "diffusion_diagonal",
                "cannot be combined with diffusion_low_rank",
            ));
        }
    };
    let config = Config {
        d: count(w[0])?,
        time_features: count(w[1])?,
        time_scale: w.get(28).map_or(1.0, |&v| real(v)),
        depth: count(w[2])?,
        width: count(w[3])?,
        head,
        lambda_diff: real(w[5]),
        diffusion_epsilon: real(w[9]),
        warmup_epochs: u32::try_from(w[10]).map_err(|_| corrupt("warmup_epochs out of range"))?,
        drift_loss: match w[11] {
            0 => DriftLoss::Mse,
            1 => DriftLoss::Nll,
            2 => DriftLoss::Gls,
            _ => return Err(corrupt("unknown drift loss")),
        },
        drift_teacher: match w.get(29).copied().unwrap_or(0) {
            0 => DriftTeacher::Chord,
            1 => DriftTeacher::Flow,
            _ => return Err(corrupt("unknown drift teacher")),
        },
        mass_weighting: match w[12] {
            0 => MassWeighting::RowMass,
            1 => MassWeighting::Threshold,
            _ => return Err(corrupt("unknown mass weighting")),
        },
        mass_threshold: real(w[13]),
        target_mode: match w[14] {
            0 => TargetMode::Pairwise,
            1 => TargetMode::PlanWeighted,
            _ => return Err(corrupt("unknown target mode")),
        },
        residual: match w[15] {
            0 => Residual::OneStep,
            1 => Residual::Flow,
            2 => Residual::Propagated,
            3 => Residual::PropagatedFrozen,
            _ => return Err(corrupt("unknown residual")),
        },
        flow_substeps: count(w[16])?,
        k_neighbours: count(w[17])?,
        shrinkage: real(w[18]),
        target_epsilon: real(w[19]),
        clip_grad_norm: real(w[20]),
        clip_trace: real(w[21]),
        learning_rate: real(w[22]),
        beta1: real(w[23]),
        beta2: real(w[24]),
        adam_epsilon: real(w[25]),
        weight_decay: real(w[26]),
        seed: w[27],
    };
    // Stored settings out of range make the bytes a corrupt model (the
    // error keeps the field's name).
    config.validate().map_err(|e| Error {
        kind: ErrorKind::CorruptModel,
        ..e
    })?;
    Ok(config)
}

/// Bytes [`save`] writes for a model of `config` in float type `F`.
pub fn model_bytes_len<F: Float>(config: &Config) -> Result<usize> {
    let p = Layout::new(config)?.len;
    Ok(params_start(CONFIG_WORDS) + p * F::BYTES + 8)
}

/// Writes the model (`config`, `params` of its layout, finite, with a valid
/// input block) to the front of `out`; returns the number of bytes written ([`model_bytes_len`]).
pub fn save<F: Float>(config: &Config, params: &[F], out: &mut [u8]) -> Result<usize> {
    let len = model_bytes_len::<F>(config)?;
    let layout = Layout::new(config)?;
    let p = layout.len;
    check_len(params, p, "params")?;
    check_finite(params, "params")?;
    layout.check_inputs(params)?;
    if out.len() < len {
        return Err(Error::too_small("out", len, out.len()));
    }
    let out = &mut out[..len];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MAGIC);
    put(&FORMAT_VERSION.to_le_bytes());
    put(&(F::BYTES as u32).to_le_bytes());
    put(&(CONFIG_WORDS as u32).to_le_bytes());
    for w in config_words(config) {
        put(&w.to_le_bytes());
    }
    put(&(p as u64).to_le_bytes());
    for &v in params {
        if F::BYTES == 4 {
            put(&(v.to_f64() as f32).to_le_bytes());
        } else {
            put(&v.to_f64().to_le_bytes());
        }
    }
    let sum = fnv1a64(&out[..len - 8]);
    out[len - 8..].copy_from_slice(&sum.to_le_bytes());
    Ok(len)
}

/// Offset of the first parameter in bytes with `words` config words.
fn params_start(words: usize) -> usize {
    HEADER + 8 * words + 8
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads the config of model bytes (all checks of [`load`] except the
/// parameters' finiteness), so a caller can size the parameter slice.
pub fn load_config<F: Float>(bytes: &[u8]) -> Result<Config> {
    if bytes.len() < HEADER {
        return Err(
            corrupt("truncated: shorter than the header").with(Detail::Len {
                expected: HEADER,
                got: bytes.len(),
            }),
        );
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt("not morphosde model bytes (bad magic)"));
    }
    let version = u32_at(bytes, 8);
    let words = match version {
        FORMAT_VERSION | 3 => CONFIG_WORDS,
        2 => CONFIG_WORDS_V2,
        1 => CONFIG_WORDS_V1,
        _ => {
            return Err(Error::new(
                ErrorKind::VersionMismatch,
                "bytes",
                "model format version is not a supported one",
            )
            .with(Detail::Value(version as f64)));
        }
    };
    if u32_at(bytes, 12) as usize != F::BYTES {
        return Err(corrupt("stored with another float width than requested")
            .with(Detail::Value(u32_at(bytes, 12) as f64)));
    }
    if u32_at(bytes, 16) as usize != words {
        return Err(corrupt(
            "config word count does not match the format version",
        ));
    }
    let fixed = params_start(words);
    if bytes.len() < fixed + 8 {
        return Err(
            corrupt("truncated: shorter than the config").with(Detail::Len {
                expected: fixed + 8,
                got: bytes.len(),
            }),
        );
    }
    let p = u64_at(bytes, fixed - 8);
    let total = usize::try_from(p)
        .ok()
        .and_then(|p| p.checked_mul(F::BYTES))
        .and_then(|b| b.checked_add(fixed + 8))
        .ok_or(corrupt("parameter count out of range"))?;
    if bytes.len() != total {
        return Err(corrupt(if bytes.len() < total {
            "truncated: shorter than its parameters"
        } else {
            "longer than the model it describes"
        })
        .with(Detail::Len {
            expected: total,
            got: bytes.len(),
        }));
    }
    if fnv1a64(&bytes[..total - 8]) != u64_at(bytes, total - 8) {
        return Err(corrupt("checksum mismatch: the bytes were altered"));
    }
    let mut stored = [0u64; CONFIG_WORDS];
    for (k, w) in stored[..words].iter_mut().enumerate() {
        *w = u64_at(bytes, HEADER + 8 * k);
    }
    let config = config_from_words(&stored[..words])?;
    if stored_len(&Layout::new(&config)?, version) as u64 != p {
        return Err(corrupt("parameter count does not match the config"));
    }
    Ok(config)
}

/// Parameters a file of `version` stores for `layout`: all of them, or
/// those after the input block before [`INPUT_BLOCK_SINCE`].
fn stored_len(layout: &Layout, version: u32) -> usize {
    if version >= INPUT_BLOCK_SINCE {
        layout.len
    } else {
        layout.len - layout.input_block.len()
    }
}

/// Stored parameter `k` of model bytes that passed [`load_config`].
fn stored_param<F: Float>(bytes: &[u8], k: usize) -> F {
    let at = params_start(u32_at(bytes, 16) as usize) + k * F::BYTES;
    if F::BYTES == 4 {
        F::from_f64(
            f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as f64,
        )
    } else {
        F::from_f64(f64::from_bits(u64_at(bytes, at)))
    }
}

/// Every check of [`load`] on model bytes, writing nothing: returns the
/// config, the layout, and the standardisation (the identity for files
/// without an input block).
fn check_bytes<F: Float>(bytes: &[u8]) -> Result<(Config, Layout, Inputs<F>)> {
    let config = load_config::<F>(bytes)?;
    let layout = Layout::new(&config)?;
    let p = stored_len(&layout, u32_at(bytes, 8));
    if let Some(k) = (0..p).position(|k| !stored_param::<F>(bytes, k).is_finite()) {
        return Err(corrupt("parameters contain NaN or infinity").with(Detail::Index(k)));
    }
    let mut inputs = Inputs::identity(config.d);
    if p == layout.len {
        let d = config.d;
        for k in 0..d {
            inputs.mean[k] = stored_param(bytes, k);
            inputs.scale[k] = stored_param(bytes, d + k);
        }
        inputs.time_span = [stored_param(bytes, 2 * d), stored_param(bytes, 2 * d + 1)];
        inputs
            .validate()
            .map_err(|_| corrupt("input block: a scale <= 0 or t_min > t_max"))?;
    }
    Ok((config, layout, inputs))
}

/// Every check of [`load`] (header, checksum, config, parameter count,
/// finiteness, input block) writing nothing:
/// returns the config when [`load`] would accept the bytes. Lets a caller
/// keep its destination intact until the bytes are known to be good.
pub fn verify<F: Float>(bytes: &[u8]) -> Result<Config> {
    check_bytes::<F>(bytes).map(|(config, _, _)| config)
}

/// Loads model bytes into `params` (length of the stored config's layout);
/// returns the config. Files without an input block get the identity one.
/// On any error `params` is untouched.
pub fn load<F: Float>(bytes: &[u8], params: &mut [F]) -> Result<Config> {
    let (config, layout, inputs) = check_bytes::<F>(bytes)?;
    check_len(params, layout.len, "params")?;
    let skipped = layout.len - stored_len(&layout, u32_at(bytes, 8));
    for (k, v) in params[skipped..].iter_mut().enumerate() {
        *v = stored_param(bytes, k);
    }
    layout.set_inputs(params, &inputs)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use std::vec;
    use std::vec::Vec;

    fn model() -> (Config, std::vec::Vec<f32>) {
        let config = Config {
            d: 3,
            depth: 2,
            width: 6,
            head: Some(DiffusionHead::Full),
            drift_loss: DriftLoss::Nll,
            residual: Residual::OneStep,
            seed: 77,
            lambda_diff: 0.25,
            time_scale: 1.0 / 42.0,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(config.seed, &mut params).unwrap();
        params[0] = -0.0;
        params[1] = f32::MIN_POSITIVE / 3.0; // subnormal
        (config, params)
    }

    #[test]
    fn save_load_round_trips_bit_exactly() {
        let (config, params) = model();
        let mut bytes = vec![0u8; model_bytes_len::<f32>(&config).unwrap() + 5];
        let n = save(&config, &params, &mut bytes).unwrap();
        let bytes = &bytes[..n];
        let mut back = vec![1.0f32; params.len()];
        let got = load(bytes, &mut back).unwrap();
        assert_eq!(got, config);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<std::vec::Vec<_>>();
        assert_eq!(bits(&back), bits(&params));
        // Every residual, the frozen propagated one (3, no new format
        // version: older files never hold it) included.
        for residual in [
            Residual::Flow,
            Residual::Propagated,
            Residual::PropagatedFrozen,
        ] {
            let c = Config { residual, ..config };
            let mut b = vec![0u8; model_bytes_len::<f32>(&c).unwrap()];
            save(&c, &params, &mut b).unwrap();
            assert_eq!(load(&b, &mut back).unwrap(), c);
        }
        // f64 parameters too.
        let p64: std::vec::Vec<f64> = params.iter().map(|&v| v as f64 + 1e-12).collect();
        let mut b64 = vec![0u8; model_bytes_len::<f64>(&config).unwrap()];
        save(&config, &p64, &mut b64).unwrap();
        let mut back64 = vec![0.0f64; p64.len()];
        load(&b64, &mut back64).unwrap();
        assert_eq!(back64, p64);
        // Asking for f32 from f64 bytes is refused.
        let e = load::<f32>(&b64, &mut back).unwrap_err();
        assert_eq!(e.msg, "stored with another float width than requested");
    }

    #[test]
    fn every_diffusion_head_round_trips_and_two_shapes_at_once_are_refused() {
        let (config, _) = model();
        let heads = [
            None,
            Some(DiffusionHead::Full),
            Some(DiffusionHead::LowRank { q: 2 }),
            Some(DiffusionHead::Diagonal),
        ];
        for head in heads {
            let c = Config { head, ..config };
            let mut params = vec![0.0f32; Layout::new(&c).unwrap().len];
            Layout::new(&c).unwrap().init(1, &mut params).unwrap();
            let mut b = vec![0u8; model_bytes_len::<f32>(&c).unwrap()];
            save(&c, &params, &mut b).unwrap();
            assert_eq!(load_config::<f32>(&b).unwrap(), c, "{head:?}");
        }
        // Words 4, 6, 8 (on, low rank, diagonal) all set: not a model.
        let mut words = config_words(&config);
        (words[4], words[6], words[8]) = (1, 1, 1);
        let e = config_from_words(&words).unwrap_err();
        assert_eq!(
            (e.kind, e.arg),
            (ErrorKind::CorruptModel, "diffusion_diagonal")
        );
    }

    #[test]
    fn altered_bytes_are_refused_with_distinct_errors() {
        let (config, params) = model();
        let mut bytes = vec![0u8; model_bytes_len::<f32>(&config).unwrap()];
        save(&config, &params, &mut bytes).unwrap();
        let mut out = vec![7.0f32; params.len()];
        let msg = |b: &[u8], out: &mut [f32]| load(b, out).unwrap_err();
        // Every single flipped byte is refused and nothing is written.
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            let e = msg(&b, &mut out);
            assert!(
                matches!(e.kind, ErrorKind::CorruptModel | ErrorKind::VersionMismatch),
                "{at}"
            );
        }
        assert!(out.iter().all(|&v| v == 7.0));
        let mut b = bytes.clone();
        b[bytes.len() / 2] ^= 1;
        assert_eq!(
            msg(&b, &mut out).msg,
            "checksum mismatch: the bytes were altered"
        );
        assert_eq!(
            msg(&bytes[..10], &mut out).msg,
            "truncated: shorter than the header"
        );
        assert_eq!(
            msg(&bytes[..bytes.len() - 1], &mut out).msg,
            "truncated: shorter than its parameters"
        );
        let mut foreign = bytes.clone();
        foreign[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            msg(&foreign, &mut out).msg,
            "not morphosde model bytes (bad magic)"
        );
        for version in [0u8, 5] {
            let mut other = bytes.clone();
            other[8] = version;
            assert_eq!(msg(&other, &mut out).kind, ErrorKind::VersionMismatch);
        }
        // Version-4 bytes labelled version 2 or 1 (30 config words, not 29
        // or 28), or 3 (no input block: 8 parameters too many).
        for version in [1u8, 2] {
            let mut relabelled = bytes.clone();
            relabelled[8] = version;
            assert_eq!(
                msg(&relabelled, &mut out).msg,
                "config word count does not match the format version"
            );
        }
        let mut relabelled = bytes.clone();
        relabelled[8] = 3;
        let end = relabelled.len() - 8;
        let sum = fnv1a64(&relabelled[..end]);
        relabelled[end..].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            msg(&relabelled, &mut out).msg,
            "parameter count does not match the config"
        );
        // An input block with a zero scale or a reversed span.
        let layout = Layout::new(&config).unwrap();
        for (at, value) in [(config.d, 0.0f32), (2 * config.d, 2.0)] {
            let mut p = params.clone();
            p[at] = value;
            p[2 * config.d + 1] = 1.0;
            let mut b = vec![0u8; bytes.len()];
            let e = save(&config, &p, &mut b).unwrap_err();
            assert_eq!(e.arg, "params", "save refuses it too");
            // Written by hand: the same bytes with the bad block.
            let mut b = bytes.clone();
            let start = params_start(CONFIG_WORDS);
            for (k, v) in p[..layout.input_block.len()].iter().enumerate() {
                b[start + 4 * k..start + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
            }
            let end = b.len() - 8;
            let sum = fnv1a64(&b[..end]);
            b[end..].copy_from_slice(&sum.to_le_bytes());
            assert_eq!(
                msg(&b, &mut out).msg,
                "input block: a scale <= 0 or t_min > t_max"
            );
        }
        let mut short = vec![0.0f32; 3];
        assert_eq!(load(&bytes, &mut short).unwrap_err().arg, "params");
        assert_eq!(
            save(&config, &params, &mut [0u8; 16]).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
    }

    /// Version-1 bytes written out field by field (28 config words in the
    /// documented order, no `time_scale`) load with `time_scale = 1`.
    #[test]
    fn version_1_bytes_load_with_unit_time_scale() {
        let config = Config {
            d: 2,
            time_features: 2,
            depth: 1,
            width: 3,
            warmup_epochs: 10,
            drift_teacher: DriftTeacher::Chord,
            k_neighbours: 8,
            shrinkage: 0.1,
            learning_rate: 1e-3,
            residual: Residual::Flow,
            ..Config::default()
        };
        let words: [u64; 28] = [
            2,                  // d
            2,                  // time_features
            1,                  // depth
            3,                  // width
            0,                  // learn_diffusion
            0.1f64.to_bits(),   // lambda_diff
            0,                  // diffusion_low_rank
            8,                  // q
            0,                  // diffusion_diagonal
            1e-6f64.to_bits(),  // diffusion_epsilon
            10,                 // warmup_epochs
            0,                  // drift_loss (MSE)
            0,                  // mass_weighting (row mass)
            0.5f64.to_bits(),   // mass_threshold
            0,                  // target_mode (pairwise)
            1,                  // residual (flow)
            4,                  // flow_substeps
            8,                  // k_neighbours
            0.1f64.to_bits(),   // shrinkage
            1e-6f64.to_bits(),  // target_epsilon
            10.0f64.to_bits(),  // clip_grad_norm
            0,                  // clip_trace
            1e-3f64.to_bits(),  // learning_rate
            0.9f64.to_bits(),   // beta1
            0.999f64.to_bits(), // beta2
            1e-8f64.to_bits(),  // adam_epsilon
            0,                  // weight_decay
            0,                  // seed
        ];
        // (2 + 2)×3 + 3 hidden, 3×2 + 2 drift head; no input block.
        let params: std::vec::Vec<f32> = (0..23).map(|k| 0.01 * k as f32 - 0.1).collect();
        let mut v1 = std::vec::Vec::new();
        v1.extend_from_slice(b"MSDEMODL");
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&4u32.to_le_bytes());
        v1.extend_from_slice(&28u32.to_le_bytes());
        for w in words {
            v1.extend_from_slice(&w.to_le_bytes());
        }
        v1.extend_from_slice(&23u64.to_le_bytes());
        for p in &params {
            v1.extend_from_slice(&p.to_le_bytes());
        }
        let sum = fnv1a64(&v1);
        v1.extend_from_slice(&sum.to_le_bytes());
        let layout = Layout::new(&config).unwrap();
        assert_eq!(layout.len, 6 + 23);
        let mut back = vec![0.0f32; layout.len];
        let got = load(&v1, &mut back).unwrap();
        assert_eq!(got, config);
        assert_eq!(got.time_scale, 1.0);
        assert_eq!(&back[6..], &params[..]);
        assert_eq!(layout.inputs(&back), Inputs::identity(2));
        // Saving writes version 4, two words and the input block longer,
        // and reads back the same.
        let mut v4 = vec![0u8; model_bytes_len::<f32>(&config).unwrap()];
        save(&config, &back, &mut v4).unwrap();
        assert_eq!((u32_at(&v4, 8), v4.len()), (4, v1.len() + 16 + 6 * 4));
        let mut again = vec![0.0f32; layout.len];
        assert_eq!(load(&v4, &mut again).unwrap(), config);
        assert_eq!(again, back);
    }

    /// `config`'s bytes as versions 2 and 3 wrote them: no input block,
    /// `words` config words (this version's first ones).
    fn older_bytes(config: &Config, params: &[f32], version: u32, words: usize) -> Vec<u8> {
        let skip = Layout::new(config).unwrap().input_block.len();
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&(words as u32).to_le_bytes());
        for w in &config_words(config)[..words] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&((params.len() - skip) as u64).to_le_bytes());
        for p in &params[skip..] {
            b.extend_from_slice(&p.to_le_bytes());
        }
        let sum = fnv1a64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Version-3 bytes (no input block) load with the identity one and no
    /// time span, version-2 bytes (29 config words: version 3's without the
    /// last, `drift_teacher`) also with [`DriftTeacher::Chord`]; a file with
    /// an unknown teacher is refused.
    #[test]
    fn versions_2_and_3_load_with_identity_inputs() {
        let config = Config {
            d: 2,
            time_features: 2,
            time_scale: 0.25,
            depth: 1,
            width: 3,
            drift_teacher: DriftTeacher::Flow,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params: Vec<f32> = (0..layout.len).map(|k| 0.02 * k as f32 - 0.2).collect();
        let mut inputs = Inputs::identity(2);
        inputs.scale[..2].copy_from_slice(&[3.0, 0.5]);
        inputs.time_span = [0.0, 1.4];
        layout.set_inputs(&mut params, &inputs).unwrap();
        let mut v4 = vec![0u8; model_bytes_len::<f32>(&config).unwrap()];
        save(&config, &params, &mut v4).unwrap();
        let mut back = vec![0.0f32; layout.len];
        assert_eq!(load(&v4, &mut back).unwrap(), config);
        assert_eq!(
            (back.as_slice(), layout.inputs(&back)),
            (&params[..], inputs)
        );
        let mut identity = params.clone();
        layout
            .set_inputs(&mut identity, &Inputs::identity(2))
            .unwrap();
        let v3 = older_bytes(&config, &params, 3, 30);
        assert_eq!(load(&v3, &mut back).unwrap(), config);
        assert_eq!(back, identity);
        let v2 = older_bytes(&config, &params, 2, 29);
        let got = load(&v2, &mut back).unwrap();
        assert_eq!(
            got,
            Config {
                drift_teacher: DriftTeacher::Chord,
                ..config
            }
        );
        assert_eq!(back, identity);
        let teacher_word = HEADER + 8 * 29;
        let mut unknown = v4.clone();
        unknown[teacher_word..teacher_word + 8].copy_from_slice(&2u64.to_le_bytes());
        let end = unknown.len() - 8;
        let sum = fnv1a64(&unknown[..end]);
        unknown[end..].copy_from_slice(&sum.to_le_bytes());
        let err = load(&unknown, &mut back).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CorruptModel);
        assert_eq!(back, identity, "nothing written on failure");
    }

    #[test]
    fn fnv1a64_matches_reference_values() {
        // Published FNV-1a-64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }
}
