//! The README's caption grid: held-out val Twemoji drawings (never in the memory, evenly
//! spaced over the entities, not picked by hand), the two documents the retriever finds for
//! each, and the greedy captions of RA-CM3 (at the default caption copy bias) and of its
//! baseline. Writes the PNGs and
//! `grid.md` (a Markdown table that links them) into OUT.
//!
//! cargo run --release -p racm3 --example caption_grid -- \
//!     checkpoints/runs/gen5-ra-pointer checkpoints/runs/gen5-base demo/memory docs/captions 12

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use racm3::Device;
use racm3::data::Split;
use racm3::progress::Quiet;
use racm3::retrieve::RetrievalPolicy;
use racm3::tasks::{CAPTION_COPY_BIAS, Generator, Retriever, SampleSettings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (ra, baseline, memory, out, count) = match args.as_slice() {
        [_, ra, baseline, memory, out, rest @ ..] => {
            let count = rest.first().map_or(Ok(12), |n| n.parse::<usize>())?;
            (ra, baseline, memory, PathBuf::from(out), count.max(1))
        }
        _ => return Err("usage: caption_grid RA_RUN BASELINE_RUN MEMORY OUT_DIR [COUNT]".into()),
    };
    let device = Device::Cpu;
    let vqgan = Path::new(racm3::experiment::demo::VQGAN);
    let ra = Generator::load(Path::new(ra), vqgan, &device)?;
    let baseline = Generator::load(Path::new(baseline), vqgan, &device)?;
    let memory = racm3::memory::open(Path::new(memory))?;
    let clip = racm3::memory::encoder_for(&memory, None)?;
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy::top(2),
    };
    let greedy = SampleSettings {
        copy_bias: CAPTION_COPY_BIAS,
        ..SampleSettings::greedy()
    };
    let held_out = racm3::datasets::twemoji_entities(Split::Val, &Quiet)?;
    let step = (held_out.len() / count).max(1);
    std::fs::create_dir_all(&out)?;
    let mut table = String::from(
        "| held-out drawing | its name | retrieved first | retrieved second | RA-CM3 | baseline |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for (index, document) in held_out.iter().step_by(step).take(count).enumerate() {
        let image = &document
            .images()
            .next()
            .ok_or("a drawing without an image")?
            .pixels;
        let query_png = format!("{index:02}-query.png");
        image.save(out.join(&query_png))?;
        let with = ra.image_to_caption(image, Some(&retriever), &greedy, None)?;
        let without = baseline.image_to_caption(image, None, &greedy, None)?;
        let mut cells = vec![format!("![]({query_png})"), document.caption()];
        for (rank, evidence) in with.context.documents.iter().enumerate() {
            let row = memory
                .row_of(&evidence.id)
                .ok_or("a retrieved id not in the memory")?;
            let retrieved = memory.document(row)?;
            let png = format!("{index:02}-retrieved-{}.png", rank + 1);
            if let Some(picture) = retrieved.images().next() {
                picture.pixels.save(out.join(&png))?;
            }
            cells.push(format!(
                "![]({png}) {} ({:.2})",
                evidence.caption, evidence.score
            ));
        }
        cells.resize(4, String::new());
        cells.push(with.samples[0].text.clone());
        cells.push(without.samples[0].text.clone());
        writeln!(table, "| {} |", cells.join(" | "))?;
    }
    std::fs::write(out.join("grid.md"), &table)?;
    print!("{table}");
    Ok(())
}
