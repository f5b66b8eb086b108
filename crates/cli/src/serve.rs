//! `racm3 serve`: the HTTP API and the web page over a memory and a generator.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use racm3::experiment::demo::{GENERATOR as DEFAULT_GENERATOR, VQGAN as DEFAULT_VQGAN};
use racm3::memory::Memory;
use racm3::tasks::Generator;
use racm3_serve::{Limits, Service, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The memory to search and retrieve from (`racm3 memory build --out`).
    #[arg(long)]
    memory: PathBuf,
    /// The generator's folder, for /generate and /caption.
    #[arg(long, default_value = DEFAULT_GENERATOR)]
    model: PathBuf,
    /// The VQGAN folder the generator was trained with.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// Serve retrieval only: no generator is loaded, /generate and /caption answer 503.
    #[arg(long)]
    retrieval_only: bool,
    /// The CLIP folder; by default the one that built the memory.
    #[arg(long)]
    clip: Option<PathBuf>,
    #[command(flatten)]
    listen: ListenArgs,
}

/// Where and how the server listens; shared with `racm3 demo`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to bind. The default answers this machine only; 0.0.0.0 opens it to the
    /// network, so set --token too.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port; 0 picks a free one (the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Every API call must send `Authorization: Bearer TOKEN` (/ and /health stay open).
    #[arg(long, env = "RACM3_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Generations running at once (each uses every core it can).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Requests that may wait in each queue; beyond that the answer is 503 + Retry-After.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest uploaded image, in pixels (read from its header before decoding).
    #[arg(long, default_value_t = Limits::default().max_image_pixels)]
    max_image_pixels: u64,
    /// Most documents a search returns.
    #[arg(long, default_value_t = Limits::default().max_k)]
    max_k: usize,
    /// Most samples per generation.
    #[arg(long, default_value_t = Limits::default().max_samples)]
    max_samples: usize,
    /// Most decoding steps per request (samples × tokens × 2 with CFG).
    #[arg(long, default_value_t = Limits::default().max_steps)]
    max_steps: usize,
}

impl ListenArgs {
    fn settings(&self) -> Result<Settings> {
        let settings = Settings {
            address: SocketAddr::new(self.host, self.port),
            token: self.token.clone(),
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_image_pixels: self.max_image_pixels,
                max_k: self.max_k,
                max_samples: self.max_samples,
                max_steps: self.max_steps,
                ..Limits::default()
            },
            workers: self.workers,
            queue: self.queue,
            timeout: Duration::from_secs(self.timeout.max(1)),
            ..Settings::default()
        };
        settings.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    args.listen.settings()?;
    let memory = racm3::memory::open(&args.memory)?;
    let encoder = racm3::memory::encoder_for(&memory, args.clip.as_deref())?;
    let generator = if args.retrieval_only {
        None
    } else {
        Some(load_generator(&args.model, &args.vqgan)?)
    };
    run(encoder, memory, generator, &args.listen)
}

pub fn load_generator(model: &Path, vqgan: &Path) -> Result<Generator> {
    Generator::load(model, vqgan, &racm3::Device::Cpu).with_context(|| {
        format!(
            "loading the generator in {} (pass --retrieval-only to serve without one)",
            model.display()
        )
    })
}

/// Starts the server and blocks until Ctrl-C.
pub fn run(
    encoder: racm3::retrieve::ClipEncoder,
    memory: Memory,
    generator: Option<Generator>,
    listen: &ListenArgs,
) -> Result<()> {
    let settings = listen.settings()?;
    if let Some(warning) = settings.warning() {
        eprintln!("{warning}");
    }
    let documents = memory.len();
    let service = Service::new(encoder, memory, generator, settings.limits.clone())?;
    let auth = match settings.token {
        Some(_) => "; API calls need the bearer token",
        None => "",
    };
    racm3_serve::serve_blocking(service, &settings, |address| {
        println!("serving {documents} documents on http://{address}/ (Ctrl-C stops){auth}");
    })
    .context("serving")
}
