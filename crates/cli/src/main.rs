//! The `racm3` command: every stage of the pipeline as a subcommand.

mod clip;
mod data;
mod demo;
mod eval;
mod generator;
mod memory;
mod metric;
mod progress;
mod serve;
mod tasks;
mod tokenizer;
mod vq;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Retrieval-augmented multimodal generation (RA-CM3) in Rust.
///
/// The pipeline, in order: fetch and inspect data (`data`), train the text tokenizer
/// (`tokenizer`), train the image tokenizer (`vq`), train the CLIP retriever (`clip`),
/// build the memory (`memory`) and query it (`retrieve`), train the generator (`train`),
/// then use it: `generate` (caption to image), `caption` (image to caption), `infill`
/// and `few-shot`; score outputs (`metric`, `eval`); and serve it all over HTTP with a web page (`serve`). Data and checkpoints are cached in $RACM3_HOME (default ~/.cache/racm3).
#[derive(Debug, Parser)]
#[command(name = "racm3", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole system in one command: fetch the emoji, build the memory, draw held-out
    /// captions with and without retrieval from the committed checkpoints, write a report,
    /// then serve the page and print its URL.
    ///
    /// Example: racm3 demo        (or racm3 demo --no-serve to stop after the report)
    Demo(demo::DemoArgs),
    /// Fetch, count and inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train or inspect the text tokenizer.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCommand),
    /// Train the VQGAN image tokenizer; encode images to codes and decode them back.
    #[command(subcommand)]
    Vq(vq::VqCommand),
    /// Train the CLIP retriever encoder and measure its recall@k.
    #[command(subcommand)]
    Clip(clip::ClipCommand),
    /// Build, update and inspect the external memory of documents and keys.
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// Find the documents of a memory closest to a text and/or image query, with RA-CM3's
    /// retrieval policy.
    ///
    /// Example: racm3 retrieve --memory mem/emoji --text "red apple" -k 4
    Retrieve(memory::RetrieveArgs),
    /// Train the CM3 generator on a dataset's documents, each with the documents the
    /// retriever finds for it (loss L_main + 0.1 L_retr), or with --baseline without them.
    ///
    /// Example: racm3 train emoji --memory mem/emoji --preset small --steps 2000 --out checkpoints/cm3-small
    Train(generator::TrainArgs),
    /// Caption to image: draw a caption with the retrieved documents in front of the
    /// prompt, classifier-free guidance, and CLIP re-ranking of the samples.
    ///
    /// Example: racm3 generate --text "red apple" --memory mem/emoji --out apple.png -k 2 --samples 8 --cfg 3.0 --seed 1 --verbose
    Generate(tasks::GenerateArgs),
    /// Image to caption: infill the image's alt text, reading the retrieved documents.
    ///
    /// Example: racm3 caption apple.png --memory mem/emoji --verbose
    Caption(tasks::CaptionArgs),
    /// Infilling: write the words at <mask> in a caption, or redraw rows of an image.
    ///
    /// Example: racm3 infill face.png --caption "smiling face with <mask>" --memory mem/emoji
    Infill(tasks::InfillArgs),
    /// Few-shot classification in context: labeled example images, then the query image.
    ///
    /// Example: racm3 few-shot --demo shirt.png=wug --demo boot.png=dax --query q.png
    FewShot(tasks::FewShotArgs),
    /// RA-CM3 against its no-retrieval baseline on held-out emoji: caption to image (FID,
    /// KID, CLIP-FID, CLIPScore over seeds) and image to caption (CIDEr-D, ROUGE-L).
    ///
    /// Example: racm3 eval --ra runs/ra --baseline runs/base --memory mem/ra --out report
    Eval(eval::EvalArgs),
    /// Score your own files: caption metrics (CIDEr-D, ROUGE-L) from COCO-format JSON.
    #[command(subcommand)]
    Metric(metric::MetricCommand),
    /// Serve the memory and the generator over HTTP: a JSON API (/retrieve, /generate,
    /// /caption, clip-retrieval's /knn-service, /documents, /health, /metrics) and a web
    /// page at /.
    ///
    /// Example: racm3 serve --memory demo/memory --port 8080
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    racm3::train::keep_freed_memory();
    let cli = Cli::parse();
    settle_thread_count();
    if !matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        end_quietly_on_a_closed_pipe();
    }
    let outcome = match cli.command {
        Command::Demo(args) => demo::demo(args),
        Command::Data(command) => data::run(command),
        Command::Tokenizer(command) => tokenizer::run(command),
        Command::Vq(command) => vq::run(command),
        Command::Clip(command) => clip::run(command),
        Command::Memory(command) => memory::run(command),
        Command::Retrieve(args) => memory::retrieve(args),
        Command::Train(args) => generator::train(args),
        Command::Generate(args) => tasks::generate(args),
        Command::Caption(args) => tasks::caption(args),
        Command::Infill(args) => tasks::infill(args),
        Command::FewShot(args) => tasks::few_shot(args),
        Command::Metric(command) => metric::run(command),
        Command::Eval(args) => eval::eval(args),
        Command::Serve(args) => serve::serve(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            eprintln!("hint: {}", hint(&error).unwrap_or_else(help_hint));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes as anyhow's `{:#}` prints them, less a cause the message before
/// it ends with (racm3's errors name the file, then say what the system said, also their
/// source), control characters escaped: paths, ids and captions come from users and files.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    racm3::data::printable(&text)
}

/// Rust ignores SIGPIPE, so printing into a pipe whose reader has gone (`racm3 … | head`)
/// panics in `println!`. The default action ends the process quietly, as other Unix tools
/// do. Commands that serve keep ignoring it: a client that hangs up must not stop them.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// candle asks for its thread count on every matrix product, and unless
/// `RAYON_NUM_THREADS` is set it answers by parsing /proc/cpuinfo each time, a cost that
/// shows in decoding profiles. Setting the variable to candle's own answer once keeps its
/// choice and ends the parsing.
fn settle_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// The fallback line on what to do: the failing command's help, which has an example.
fn help_hint() -> String {
    // The subcommands named on the command line, up to the first other argument (an image,
    // a dataset), whose help is the one to read.
    let mut command = Cli::command();
    let mut names = vec!["racm3".to_owned()];
    // args_os: a path that is not UTF-8 ends the walk instead of panicking.
    let args = std::env::args_os()
        .skip(1)
        .map_while(|arg| arg.into_string().ok());
    for arg in args.filter(|arg| !arg.starts_with('-')) {
        let Some(subcommand) = command.find_subcommand(&arg).cloned() else {
            break;
        };
        names.push(arg);
        command = subcommand;
    }
    format!(
        "check the arguments against `{} --help`, which has an example",
        names.join(" ")
    )
}

/// One line on what to do next, for the errors a user can fix.
fn hint(error: &anyhow::Error) -> Option<String> {
    use racm3::data::Error as DataError;
    match error.downcast_ref::<DataError>()? {
        DataError::NotFetched { dataset, .. } => Some(format!("run `racm3 data fetch {dataset}`")),
        DataError::UnknownDataset { .. } => {
            Some("name a built-in dataset or an existing folder or .tar".into())
        }
        // Commands given image files (`vq encode`, `caption`) have no --skip-bad.
        DataError::Image { .. } => Some(
            "fix or replace that image; commands reading a whole dataset leave bad samples \
             out with --skip-bad"
                .into(),
        ),
        DataError::MissingCaption { .. } | DataError::CaptionNotUtf8 { .. } => {
            Some("fix or remove that sample, or pass --skip-bad to leave bad samples out".into())
        }
        _ => None,
    }
}
