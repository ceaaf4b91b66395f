//! `ddpm schedule`: print a noise schedule's tables (diffusers' names) and the inference
//! timesteps a sampler would visit; optionally plot ᾱ_t, β_t and log-SNR against t.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ddpm_schedule::{
    BetaSchedule, NoiseSchedule, SamplingConfig, TimestepSpacing, inference_timesteps,
};
use serde_json::{Map, Value, json};

use crate::output::{note, outln};
use crate::plot::{Panel, Series, line_panels};

/// Output format of `ddpm schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Every table as JSON arrays, keyed by diffusers' names.
    Json,
    /// A short human-readable summary.
    Table,
}

/// Arguments of `ddpm schedule`.
#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// A diffusers `scheduler_config.json`, or a directory holding one (or `scheduler/`).
    /// Flags given on the command line override its values.
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// β shape: linear, scaled_linear, squaredcos_cap_v2 (cosine), sigmoid [default: linear].
    #[arg(long)]
    beta_schedule: Option<String>,
    /// T, the number of diffusion steps [default: 1000].
    #[arg(long)]
    num_train_timesteps: Option<usize>,
    /// β₁ for linear/scaled_linear/sigmoid [default: 1e-4].
    #[arg(long)]
    beta_start: Option<f64>,
    /// β_T for linear/scaled_linear/sigmoid [default: 0.02].
    #[arg(long)]
    beta_end: Option<f64>,
    /// Rescale β to zero terminal SNR (Lin et al. 2023).
    #[arg(long)]
    rescale_betas_zero_snr: bool,
    /// Also list the timesteps a sampler visits with this many steps.
    #[arg(long)]
    num_inference_steps: Option<usize>,
    /// Spacing of those timesteps: leading, linspace, trailing [default: from the config].
    #[arg(long)]
    timestep_spacing: Option<String>,
    /// Offset added to `leading` timesteps [default: from the config].
    #[arg(long)]
    steps_offset: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Draw ᾱ_t, β_t and log-SNR against t into this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Runs `ddpm schedule`.
pub fn run(args: ScheduleArgs) -> Result<()> {
    let mut config = match &args.scheduler {
        Some(path) => {
            let loaded = SamplingConfig::load(path)
                .with_context(|| format!("--scheduler {}", path.display()))?;
            if !loaded.ignored_keys.is_empty() {
                note!(
                    "note: {} ignores keys it does not use: {}",
                    path.display(),
                    loaded.ignored_keys.join(", ")
                );
            }
            loaded.config
        }
        None => SamplingConfig::default(),
    };
    apply_overrides(&args, &mut config)?;
    let schedule = NoiseSchedule::new(&config.schedule)?;
    let timesteps = match args.num_inference_steps {
        Some(n) => Some(inference_timesteps(
            schedule.num_train_timesteps(),
            n,
            config.timestep_spacing,
            config.steps_offset,
        )?),
        None => None,
    };

    match args.format {
        Format::Json => {
            let out = to_json(&config, &schedule, timesteps.as_deref());
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        Format::Table => print_table(&config, &schedule, timesteps.as_deref())?,
    }
    if let Some(path) = &args.plot {
        plot(&schedule, path)?;
        note!("wrote {}", path.display());
    }
    Ok(())
}

fn apply_overrides(args: &ScheduleArgs, config: &mut SamplingConfig) -> Result<()> {
    let s = &mut config.schedule;
    if let Some(t) = args.num_train_timesteps {
        s.num_train_timesteps = t;
    }
    if args.beta_schedule.is_some() || args.beta_start.is_some() || args.beta_end.is_some() {
        let (start, end) = s.beta_schedule.range();
        let name = args
            .beta_schedule
            .clone()
            .unwrap_or_else(|| s.beta_schedule.diffusers_name().to_string());
        s.beta_schedule = BetaSchedule::from_diffusers_name(
            &name,
            args.beta_start.unwrap_or(start),
            args.beta_end.unwrap_or(end),
        )
        .context("--beta-schedule")?;
    }
    if args.rescale_betas_zero_snr {
        s.rescale_betas_zero_snr = true;
    }
    if let Some(spacing) = &args.timestep_spacing {
        config.timestep_spacing = spacing
            .parse::<TimestepSpacing>()
            .context("--timestep-spacing")?;
    }
    if let Some(offset) = args.steps_offset {
        config.steps_offset = offset;
    }
    Ok(())
}

fn to_json(config: &SamplingConfig, s: &NoiseSchedule, timesteps: Option<&[usize]>) -> Value {
    let mut out = Map::new();
    out.insert("num_train_timesteps".into(), json!(s.num_train_timesteps()));
    out.insert(
        "beta_schedule".into(),
        json!(config.schedule.beta_schedule.diffusers_name()),
    );
    out.insert(
        "rescale_betas_zero_snr".into(),
        json!(config.schedule.rescale_betas_zero_snr),
    );
    for (name, table) in s.named_tables() {
        out.insert(name.into(), json!(table));
    }
    if let Some(ts) = timesteps {
        out.insert(
            "timestep_spacing".into(),
            json!(config.timestep_spacing.diffusers_name()),
        );
        out.insert("steps_offset".into(), json!(config.steps_offset));
        out.insert("timesteps".into(), json!(ts));
    }
    Value::Object(out)
}

fn print_table(
    config: &SamplingConfig,
    s: &NoiseSchedule,
    timesteps: Option<&[usize]>,
) -> Result<()> {
    let t_total = s.num_train_timesteps();
    outln!(
        "{} schedule, T = {t_total}{}",
        config.schedule.beta_schedule.diffusers_name(),
        if config.schedule.rescale_betas_zero_snr {
            ", zero terminal SNR"
        } else {
            ""
        }
    )?;
    outln!(
        "{:>6} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "t",
        "beta",
        "alpha_bar",
        "post_var",
        "post_logvar",
        "log_snr"
    )?;
    let mut rows: Vec<usize> = vec![0, 1, t_total / 4, t_total / 2, 3 * t_total / 4, t_total - 1];
    rows.retain(|&i| i < t_total);
    rows.dedup();
    for i in rows {
        outln!(
            "{:>6} {:>12.6e} {:>12.6e} {:>12.6e} {:>12.5} {:>10.4}",
            i,
            s.betas()[i],
            s.alpha_bar()[i],
            s.posterior_variance()[i],
            s.posterior_log_variance_clipped()[i],
            s.snr()[i].ln()
        )?;
    }
    if let Some(ts) = timesteps {
        outln!(
            "timesteps ({} steps, {} spacing, offset {}): {ts:?}",
            ts.len(),
            config.timestep_spacing.diffusers_name(),
            config.steps_offset
        )?;
    }
    Ok(())
}

fn plot(s: &NoiseSchedule, path: &std::path::Path) -> Result<()> {
    let pts = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| ((i + 1) as f64, y))
            .collect()
    };
    let panel = |title: &str, y: &str, log_y: bool, name: &str, v: &[f64]| Panel {
        title: title.into(),
        x_label: "t".into(),
        y_label: y.into(),
        log_y,
        series: vec![Series {
            name: name.into(),
            points: pts(v),
        }],
    };
    line_panels(
        path,
        &[
            panel("ᾱ_t", "alpha_bar", false, "ᾱ", s.alpha_bar()),
            panel("β_t", "beta (log scale)", true, "β", s.betas()),
            panel("log-SNR", "log(ᾱ/(1−ᾱ))", false, "log SNR", &s.log_snr()),
        ],
    )
}
