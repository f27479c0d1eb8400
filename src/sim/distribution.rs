//! Offline-time distributions: how long the payee stays away after a payment is sent.
//!
//! Times are in blocks of ten minutes, as real numbers (a payee may come back after 0.3
//! blocks). Sampling is by inverse transform from uniform draws of the caller's RNG, so a
//! seeded RNG gives the same times on every platform that runs the same `rand` version.
//!
//! ```
//! use asyncpay::sim::OfflineDistribution;
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let hour = OfflineDistribution::Exponential { mean_blocks: 6.0 };
//! hour.validate().unwrap();
//! let mut rng = StdRng::seed_from_u64(7);
//! let t = hour.sample(&mut rng);
//! assert!(t >= 0.0 && t.is_finite());
//! ```

use rand::Rng;
use serde::Serialize;

use super::SimError;

/// Blocks per hour at the ten-minute target spacing.
pub const BLOCKS_PER_HOUR: f64 = 6.0;

/// A distribution of offline times, in blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OfflineDistribution {
    /// Memoryless: the payee is as likely to return in the next block whatever the time
    /// already spent away.
    Exponential {
        /// Mean offline time in blocks.
        mean_blocks: f64,
    },
    /// Heavy right tail: `median · exp(σ·Z)` with Z standard normal.
    LogNormal {
        /// Median offline time in blocks.
        median_blocks: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
    },
    /// One component chosen per payment with probability proportional to its weight.
    Mixture {
        /// `(weight, component)` pairs; weights are positive and need not sum to one.
        components: Vec<(f64, OfflineDistribution)>,
    },
}

impl OfflineDistribution {
    /// Checks that every parameter is finite and positive (σ may be zero) and that a
    /// mixture is not empty.
    pub fn validate(&self) -> Result<(), SimError> {
        let positive = |name: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(SimError::BadParameter { name, value })
            }
        };
        match self {
            OfflineDistribution::Exponential { mean_blocks } => {
                positive("mean_blocks", *mean_blocks)
            }
            OfflineDistribution::LogNormal {
                median_blocks,
                sigma,
            } => {
                positive("median_blocks", *median_blocks)?;
                if sigma.is_finite() && *sigma >= 0.0 {
                    Ok(())
                } else {
                    Err(SimError::BadParameter {
                        name: "sigma",
                        value: *sigma,
                    })
                }
            }
            OfflineDistribution::Mixture { components } => {
                if components.is_empty() {
                    return Err(SimError::EmptyMixture);
                }
                for (weight, component) in components {
                    positive("weight", *weight)?;
                    component.validate()?;
                }
                Ok(())
            }
        }
    }

    /// The analytic mean in blocks.
    pub fn mean_blocks(&self) -> f64 {
        match self {
            OfflineDistribution::Exponential { mean_blocks } => *mean_blocks,
            OfflineDistribution::LogNormal {
                median_blocks,
                sigma,
            } => median_blocks * (sigma * sigma / 2.0).exp(),
            OfflineDistribution::Mixture { components } => {
                let total: f64 = components.iter().map(|(w, _)| w).sum();
                components
                    .iter()
                    .map(|(w, c)| w / total * c.mean_blocks())
                    .sum()
            }
        }
    }

    /// One offline time in blocks (finite, ≥ 0). The distribution must have passed
    /// [`OfflineDistribution::validate`].
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            OfflineDistribution::Exponential { mean_blocks } => {
                // 1 - U lies in (0, 1], so the logarithm is finite.
                -mean_blocks * (1.0 - rng.gen::<f64>()).ln()
            }
            OfflineDistribution::LogNormal {
                median_blocks,
                sigma,
            } => median_blocks * (sigma * standard_normal(rng)).exp(),
            OfflineDistribution::Mixture { components } => {
                let total: f64 = components.iter().map(|(w, _)| w).sum();
                let mut pick = rng.gen::<f64>() * total;
                for (weight, component) in components {
                    if pick < *weight {
                        return component.sample(rng);
                    }
                    pick -= weight;
                }
                // Rounding can leave `pick` a hair above the last weight.
                components
                    .last()
                    .expect("validated mixtures are not empty")
                    .1
                    .sample(rng)
            }
        }
    }

    /// A one-line description in hours.
    pub fn describe(&self) -> String {
        match self {
            OfflineDistribution::Exponential { mean_blocks } => {
                format!("exponential, mean {}", duration(*mean_blocks))
            }
            OfflineDistribution::LogNormal {
                median_blocks,
                sigma,
            } => format!(
                "log-normal, median {}, sigma {sigma}",
                duration(*median_blocks)
            ),
            OfflineDistribution::Mixture { components } => {
                let total: f64 = components.iter().map(|(w, _)| w).sum();
                let parts: Vec<String> = components
                    .iter()
                    .map(|(w, c)| format!("{:.0}% {}", 100.0 * w / total, c.describe()))
                    .collect();
                format!("mixture: {}", parts.join("; "))
            }
        }
    }
}

/// `blocks` as hours, or as minutes below an hour.
fn duration(blocks: f64) -> String {
    let hours = blocks / BLOCKS_PER_HOUR;
    if hours < 1.0 {
        format!("{:.0} min", hours * 60.0)
    } else {
        format!("{hours:.0} h")
    }
}

/// Box-Muller: one standard normal draw from two uniform draws.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>(); // (0, 1]: the logarithm is finite
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

/// A distribution with the name the bench prints and where its parameters come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedDistribution {
    /// Short name, e.g. `exp-8h`.
    pub name: &'static str,
    /// Where the parameters come from (every one of ours is an assumption, said so).
    pub source: &'static str,
    /// The distribution.
    pub distribution: OfflineDistribution,
}

/// The offline-time distributions documented in `docs/capital.md`.
///
/// No public measurement of how long mobile Lightning wallets stay offline was found; every
/// parameter below is an assumption chosen to span minutes to weeks, and the bench reports
/// each distribution separately so no single guess carries the result.
pub fn documented_distributions() -> Vec<NamedDistribution> {
    let hours = |h: f64| h * BLOCKS_PER_HOUR;
    vec![
        NamedDistribution {
            name: "exp-1h",
            source: "assumption: payee returns within about an hour",
            distribution: OfflineDistribution::Exponential {
                mean_blocks: hours(1.0),
            },
        },
        NamedDistribution {
            name: "exp-8h",
            source: "assumption: payee returns within a working day or a night",
            distribution: OfflineDistribution::Exponential {
                mean_blocks: hours(8.0),
            },
        },
        NamedDistribution {
            name: "exp-24h",
            source: "assumption: payee opens the wallet about once a day",
            distribution: OfflineDistribution::Exponential {
                mean_blocks: hours(24.0),
            },
        },
        NamedDistribution {
            name: "phone",
            source: "assumption: half answer a push notification within minutes, \
                     30% open the app later that day, 20% the next day or later",
            distribution: OfflineDistribution::Mixture {
                components: vec![
                    (
                        0.5,
                        OfflineDistribution::Exponential {
                            mean_blocks: 1.0, // ten minutes
                        },
                    ),
                    (
                        0.3,
                        OfflineDistribution::Exponential {
                            mean_blocks: hours(3.0),
                        },
                    ),
                    (
                        0.2,
                        OfflineDistribution::LogNormal {
                            median_blocks: hours(16.0),
                            sigma: 0.75,
                        },
                    ),
                ],
            },
        },
        NamedDistribution {
            name: "dormant",
            source: "assumption: a rarely opened wallet, median three days, heavy tail",
            distribution: OfflineDistribution::LogNormal {
                median_blocks: hours(72.0),
                sigma: 1.2,
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn sample_means_approach_the_analytic_means() {
        for named in documented_distributions() {
            named.distribution.validate().unwrap();
            let mut rng = StdRng::seed_from_u64(11);
            let n = 200_000;
            let sum: f64 = (0..n).map(|_| named.distribution.sample(&mut rng)).sum();
            let sample_mean = sum / f64::from(n);
            let mean = named.distribution.mean_blocks();
            // The log-normal tail converges slowly; 5% is ample at this n and still
            // catches a wrong parameterisation (e.g. a mean used as a median).
            assert!(
                (sample_mean - mean).abs() / mean < 0.05,
                "{}: sample mean {sample_mean}, analytic {mean}",
                named.name
            );
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let bad = [
            OfflineDistribution::Exponential { mean_blocks: 0.0 },
            OfflineDistribution::Exponential {
                mean_blocks: f64::NAN,
            },
            OfflineDistribution::LogNormal {
                median_blocks: 1.0,
                sigma: -1.0,
            },
            OfflineDistribution::Mixture { components: vec![] },
            OfflineDistribution::Mixture {
                components: vec![(0.0, OfflineDistribution::Exponential { mean_blocks: 1.0 })],
            },
        ];
        for d in bad {
            assert!(d.validate().is_err(), "{d:?}");
        }
    }
}
