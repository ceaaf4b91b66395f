//! `ddpm`: command-line front end of the `ddpm` workspace.
//!
//! Each subcommand lives in its own file under `commands/` and exposes a clap `Args`
//! struct plus a `run` function; this file only wires them together.

mod alloc;
mod backend;
mod commands;
mod output;
mod plot;

use clap::{Parser, Subcommand};

/// Denoising Diffusion Probabilistic Models (Ho et al. 2020) in pure Rust on Burn.
#[derive(Parser, Debug)]
#[command(name = "ddpm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print (and optionally plot) a noise schedule's tables and inference timesteps.
    Schedule(commands::schedule::ScheduleArgs),
    /// Train a DDPM (Algorithm 1, the paper's recipe) with checkpoints and exact --resume.
    Train(commands::train::TrainArgs),
    /// The rendezvous server of multi-node training: start it once, then `ddpm train
    /// --num-nodes N --node-rank R --orchestrator ws://HOST:PORT ...` on every machine.
    #[cfg(feature = "collective")]
    Orchestrator(commands::train::OrchestratorArgs),
    /// Inspect a U-Net (diffusers directory, native checkpoint or preset).
    Unet(commands::unet::UnetArgs),
    /// Convert a U-Net between a diffusers directory and the native format.
    Convert(commands::convert::ConvertArgs),
    /// Draw images from a U-Net with DDPM, DDIM or DPM-Solver++ and write a PNG grid.
    Sample(commands::sample::SampleArgs),
    /// Evaluate a model: bits/dim (`eval nll`), rate–distortion (`eval rate-distortion`),
    /// sample quality (`eval fid`).
    Eval(commands::eval::EvalArgs),
    /// Interpolate between two images in x_t and decode with the reverse process, noise fixed
    /// across λ (the paper's Fig. 8).
    Interpolate(commands::latent::InterpolateArgs),
    /// Encode an image to x_t at several t and draw samples from each shared x_t (Fig. 7).
    SharedLatent(commands::latent::SharedLatentArgs),
    /// Time a U-Net preset's forward pass, training step or DDIM sample on this machine.
    Bench(commands::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    alloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `ddpm schedule | head -1`: the reader has what it wanted.
        Err(err) if err.downcast_ref::<output::StdoutClosed>().is_some() => {
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line: "context: cause: root cause".
            output::note!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Schedule(args) => commands::schedule::run(args),
        Command::Train(args) => commands::train::run(args),
        #[cfg(feature = "collective")]
        Command::Orchestrator(args) => commands::train::run_orchestrator(args),
        Command::Unet(args) => commands::unet::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Sample(args) => commands::sample::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Interpolate(args) => commands::latent::run_interpolate(args),
        Command::SharedLatent(args) => commands::latent::run_shared_latent(args),
        Command::Bench(args) => commands::bench::run(args),
    }
}
