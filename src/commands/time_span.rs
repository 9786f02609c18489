//! What `field` and `simulate` say when they are asked about times outside
//! a model's training span: the model there is the one at the span's
//! nearest end (its time features read the time clamped to the span, see
//! `morphosde_core::model::inputs`). Autonomous models (no time input) and
//! models without a span (older files) have nothing to say.

use morphosde_core::model::{Config, Layout};
use serde_json::{Value, json};

/// Times outside a model's training span `[t_min, t_max]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outside {
    pub span: [f32; 2],
    /// How far the earliest time lies before `t_min` and the latest after
    /// `t_max` (0 when none does).
    pub before: f32,
    pub after: f32,
    /// How many of the times lie outside, of how many.
    pub count: usize,
    pub total: usize,
}

/// The model's training span, `None` for an autonomous model or one
/// without a span.
pub fn training_span(config: &Config, params: &[f32]) -> Option<[f32; 2]> {
    let layout = Layout::new(config).ok()?;
    let inputs = layout.inputs(params);
    (config.time_features > 0 && inputs.has_time_span()).then_some(inputs.time_span)
}

/// Which of `times` lie outside the model's training span (`None` when
/// none does, or the model has no span).
pub fn outside(config: &Config, params: &[f32], times: &[f32]) -> Option<Outside> {
    let span = training_span(config, params)?;
    let count = times
        .iter()
        .filter(|&&t| t < span[0] || t > span[1])
        .count();
    (count > 0).then(|| Outside {
        span,
        before: times.iter().fold(0.0f32, |m, &t| m.max(span[0] - t)),
        after: times.iter().fold(0.0f32, |m, &t| m.max(t - span[1])),
        count,
        total: times.len(),
    })
}

impl Outside {
    /// One line for stderr: `what` (e.g. "3 of 40 points") lie outside.
    pub fn message(&self, command: &str, what: &str) -> String {
        let mut reach = vec![];
        if self.before > 0.0 {
            reach.push(format!("{} before its start", self.before));
        }
        if self.after > 0.0 {
            reach.push(format!("{} past its end", self.after));
        }
        format!(
            "{command}: {what} outside the model's training span [{}, {}] (up to {}); there the \
             model is the one at the span's nearest end (its time input is clamped), not an \
             extrapolation in time",
            self.span[0],
            self.span[1],
            reach.join(" and ")
        )
    }

    /// The summary's record: span, reach on both sides, count.
    pub fn json(&self) -> Value {
        json!({
            "span": self.span,
            "before_start": self.before,
            "past_end": self.after,
            "count": self.count,
            "of": self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use morphosde_core::model::Inputs;

    #[test]
    fn reports_how_far_and_how_many() {
        let config = Config {
            d: 2,
            depth: 0,
            time_features: 2,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(0, &mut params).unwrap();
        assert_eq!(outside(&config, &params, &[-5.0, 9.0]), None, "no span");
        let mut inputs = Inputs::identity(2);
        inputs.time_span = [0.0, 1.4];
        layout.set_inputs(&mut params, &inputs).unwrap();
        assert_eq!(outside(&config, &params, &[0.0, 0.7, 1.4]), None);
        let o = outside(&config, &params, &[-0.25, 0.5, 1.9, 1.6]).unwrap();
        assert_eq!((o.before, o.after, o.count, o.total), (0.25, 0.5, 3, 4));
        let text = o.message("field", "3 of 4 points lie");
        assert!(
            text.contains("[0, 1.4]") && text.contains("0.5 past its end"),
            "{text}"
        );
        let autonomous = Config {
            time_features: 0,
            ..config
        };
        let layout = Layout::new(&autonomous).unwrap();
        let mut p = vec![0.0f32; layout.len];
        layout.init(0, &mut p).unwrap();
        layout.set_inputs(&mut p, &inputs).unwrap();
        assert_eq!(outside(&autonomous, &p, &[9.0]), None, "no time input");
    }
}
