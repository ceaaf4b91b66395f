//! The forward process q(x_t | x₀) and its posterior q(x_{t−1} | x_t, x₀) on a Burn device,
//! with one timestep per sample.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 4, 6 and 7.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use ddpm_schedule::NoiseSchedule;

use crate::{Coef, NoiseLevel, ReverseCoefficients, posterior_mean};

/// A schedule table that [`ForwardProcess`] keeps on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Table {
    /// β_t.
    Betas,
    /// ᾱ_t.
    AlphaBar,
    /// √ᾱ_t.
    SqrtAlphaBar,
    /// √(1 − ᾱ_t).
    SqrtOneMinusAlphaBar,
    /// μ̃_t's coefficient of x₀ (Eq. 7).
    PosteriorMeanCoef1,
    /// μ̃_t's coefficient of x_t (Eq. 7).
    PosteriorMeanCoef2,
    /// β̃_t (Eq. 7).
    PosteriorVariance,
    /// log β̃_t, first entry replaced by log β̃₂.
    PosteriorLogVarianceClipped,
    /// log β_t, first entry replaced by log β̃₂ (fixed_large).
    FixedLargeLogVariance,
}

const TABLES: [Table; 9] = [
    Table::Betas,
    Table::AlphaBar,
    Table::SqrtAlphaBar,
    Table::SqrtOneMinusAlphaBar,
    Table::PosteriorMeanCoef1,
    Table::PosteriorMeanCoef2,
    Table::PosteriorVariance,
    Table::PosteriorLogVarianceClipped,
    Table::FixedLargeLogVariance,
];

fn host_table(schedule: &NoiseSchedule, table: Table) -> &[f64] {
    match table {
        Table::Betas => schedule.betas(),
        Table::AlphaBar => schedule.alpha_bar(),
        Table::SqrtAlphaBar => schedule.sqrt_alpha_bar(),
        Table::SqrtOneMinusAlphaBar => schedule.sqrt_one_minus_alpha_bar(),
        Table::PosteriorMeanCoef1 => schedule.posterior_mean_coef1(),
        Table::PosteriorMeanCoef2 => schedule.posterior_mean_coef2(),
        Table::PosteriorVariance => schedule.posterior_variance(),
        Table::PosteriorLogVarianceClipped => schedule.posterior_log_variance_clipped(),
        Table::FixedLargeLogVariance => schedule.fixed_large_log_variance(),
    }
}

/// The posterior q(x_{t−1} | x_t, x₀) = N(μ̃_t, β̃_t I)   (Ho et al. 2020, Eqs. 6–7)
#[derive(Debug, Clone)]
pub struct Posterior<B: Backend, const D: usize> {
    /// μ̃_t(x_t, x₀), shaped like x_t.
    pub mean: Tensor<B, D>,
    /// β̃_t, `[batch, 1, …, 1]`.
    pub variance: Tensor<B, D>,
    /// log β̃_t (clipped: log β̃₂ at t = 1), `[batch, 1, …, 1]`.
    pub log_variance: Tensor<B, D>,
}

/// A [`NoiseSchedule`]'s tables uploaded once to a device, for per-sample timesteps.
///
/// Timesteps are 0-based (`t = 0` is the paper's t = 1), one per sample: an `Int` tensor of
/// shape `[batch]`, always the last argument (as in diffusers' `add_noise(x0, noise, t)`).
/// The `f64` tables are cast to the backend's float type on upload.
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Int, Tensor};
/// use ddpm_forward::ForwardProcess;
/// use ddpm_schedule::NoiseSchedule;
///
/// let device = Default::default();
/// let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
/// let x0 = Tensor::<Flex, 4>::ones([2, 1, 4, 4], &device);
/// let eps = Tensor::<Flex, 4>::zeros([2, 1, 4, 4], &device);
/// let t = Tensor::<Flex, 1, Int>::from_ints([0, 999], &device);
/// let x_t = fp.q_sample(x0, eps, t); // √ᾱ_t for each sample
/// assert_eq!(x_t.dims(), [2, 1, 4, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct ForwardProcess<B: Backend> {
    schedule: NoiseSchedule,
    tables: Vec<Tensor<B, 1>>,
    device: B::Device,
}

impl<B: Backend> ForwardProcess<B> {
    /// Uploads the tables of `schedule` to `device`.
    pub fn new(schedule: &NoiseSchedule, device: &B::Device) -> Self {
        let tables = TABLES
            .iter()
            .map(|&table| {
                // f64 on the host; `from_data` casts to the device's float type (f32 by
                // default, full precision when the device defaults to f64).
                let values: Vec<f64> = host_table(schedule, table).to_vec();
                let n = values.len();
                Tensor::from_data(TensorData::new(values, [n]), device)
            })
            .collect();
        Self {
            schedule: schedule.clone(),
            tables,
            device: device.clone(),
        }
    }

    /// The host-side schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// The device the tables live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// T.
    pub fn num_train_timesteps(&self) -> usize {
        self.schedule.num_train_timesteps()
    }

    /// Gathers `table[t]` per sample, shaped `[batch, 1, …, 1]` to broadcast over `D` dims.
    ///
    /// # Panics
    /// If `t` holds a timestep ≥ T (backend-dependent: an index error or garbage).
    pub fn gather<const D: usize>(&self, table: Table, t: Tensor<B, 1, Int>) -> Tensor<B, D> {
        let idx = TABLES
            .iter()
            .position(|&x| x == table)
            .expect("every table is uploaded");
        let batch = t.dims()[0];
        let mut shape = [1usize; D];
        shape[0] = batch;
        self.tables[idx].clone().select(0, t).reshape(shape)
    }

    /// The noise level ᾱ_t per sample, with μ̃_t's coefficients (it reads every prediction
    /// type).
    pub fn noise_level<const D: usize>(&self, t: Tensor<B, 1, Int>) -> NoiseLevel<B, D> {
        NoiseLevel {
            sqrt_alpha_bar: Coef::PerSample(self.gather(Table::SqrtAlphaBar, t.clone())),
            sqrt_one_minus_alpha_bar: Coef::PerSample(
                self.gather(Table::SqrtOneMinusAlphaBar, t.clone()),
            ),
            posterior_mean: Some([
                Coef::PerSample(self.gather(Table::PosteriorMeanCoef1, t.clone())),
                Coef::PerSample(self.gather(Table::PosteriorMeanCoef2, t)),
            ]),
        }
    }

    /// x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε   (Ho et al. 2020, Eq. 4); diffusers' `add_noise`, with
    /// the same argument order (timesteps last, as every method here).
    ///
    /// # Shapes
    /// `x_0`, `eps`: `[batch, …]`; `t`: `[batch]`.
    #[doc(alias = "add_noise")]
    pub fn q_sample<const D: usize>(
        &self,
        x_0: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        check_batch(&x_0, &t);
        self.noise_level(t).q_sample(x_0, eps)
    }

    /// q(x_{t−1} | x_t, x₀): μ̃_t = coef1 · x₀ + coef2 · x_t, β̃_t   (Eqs. 6–7)
    pub fn q_posterior<const D: usize>(
        &self,
        x_0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Posterior<B, D> {
        check_batch(&x_t, &t);
        let c1 = Coef::PerSample(self.gather(Table::PosteriorMeanCoef1, t.clone()));
        let c2 = Coef::PerSample(self.gather(Table::PosteriorMeanCoef2, t.clone()));
        Posterior {
            mean: posterior_mean(&c1, &c2, x_0, x_t),
            variance: self.gather(Table::PosteriorVariance, t.clone()),
            log_variance: self.gather(Table::PosteriorLogVarianceClipped, t),
        }
    }

    /// The coefficients of the reverse step at each sample's t, for
    /// [`crate::p_mean_variance`] (consecutive steps: the schedule's tables).
    pub fn reverse_coefficients<const D: usize>(
        &self,
        t: Tensor<B, 1, Int>,
    ) -> ReverseCoefficients<B, D> {
        let per_sample = |table| Coef::PerSample(self.gather(table, t.clone()));
        let level = self.noise_level(t.clone());
        // Per sample every step is the training chain's own, so μ̃'s coefficients are the
        // level's (gathered once).
        let [mean_coef1, mean_coef2] = level
            .posterior_mean
            .clone()
            .expect("ForwardProcess::noise_level carries μ̃'s coefficients");
        ReverseCoefficients {
            level,
            mean_coef1,
            mean_coef2,
            log_posterior_variance: per_sample(Table::PosteriorLogVarianceClipped),
            fixed_large_log_variance: per_sample(Table::FixedLargeLogVariance),
            log_beta: Coef::PerSample(self.gather::<D>(Table::Betas, t.clone()).log()),
            consecutive: true,
        }
    }

    /// x̂₀ = √(1/ᾱ_t) · x_t − √(1/ᾱ_t − 1) · ε   (see [`NoiseLevel::x0_from_eps`])
    pub fn predict_x0_from_eps<const D: usize>(
        &self,
        x_t: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        self.noise_level(t).x0_from_eps(x_t, eps)
    }

    /// ε̂ from x̂₀ (see [`NoiseLevel::eps_from_x0`]).
    pub fn predict_eps_from_x0<const D: usize>(
        &self,
        x_t: Tensor<B, D>,
        x_0: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        self.noise_level(t).eps_from_x0(x_t, x_0)
    }

    /// v = √ᾱ_t · ε − √(1 − ᾱ_t) · x₀ (diffusers' `get_velocity`).
    #[doc(alias = "get_velocity")]
    pub fn velocity<const D: usize>(
        &self,
        x_0: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        check_batch(&x_0, &t);
        self.noise_level(t).velocity(x_0, eps)
    }

    /// x̂₀ from v (see [`NoiseLevel::x0_from_v`]).
    pub fn x0_from_v<const D: usize>(
        &self,
        x_t: Tensor<B, D>,
        v: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        self.noise_level(t).x0_from_v(x_t, v)
    }

    /// ε̂ from v (see [`NoiseLevel::eps_from_v`]).
    pub fn eps_from_v<const D: usize>(
        &self,
        x_t: Tensor<B, D>,
        v: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, D> {
        self.noise_level(t).eps_from_v(x_t, v)
    }
}

/// # Panics
/// When the batch sizes of a tensor and its timesteps differ.
fn check_batch<B: Backend, const D: usize>(x: &Tensor<B, D>, t: &Tensor<B, 1, Int>) {
    let (bx, bt) = (x.dims()[0], t.dims()[0]);
    assert!(
        bx == bt,
        "timesteps have shape [{bt}] but the batch has {bx} samples (tensor shape {:?})",
        x.dims()
    );
}
