//! The experiment's report as Markdown (tables, sample grids, the verdict against the
//! target) and as a page of its own, for the CLI, the server or any other reader of a
//! `report.json`.

use super::SHOTS;
use serde_json::Value;

/// The report value [`super::run`] returns (or a `report.json` read back) as Markdown.
pub fn markdown(report: &Value) -> String {
    let cell = |model: &str, task: &str, metric: &str| -> String {
        summary_cell(&report["models"][model][task][metric])
    };
    // Reports made before the split could be chosen held out the val entities.
    let split = report["split"].as_str().unwrap_or("val");
    let mut out = format!(
        "# RA-CM3 against its baseline on {} held-out emoji entities ({split} split)\n\n\
         Memory: {} documents; K = {}, query threshold {}, CFG {}; {}.\n",
        report["held_out_entities"],
        report["memory_documents"],
        report["k"],
        report["query_threshold"],
        report["cfg"],
        report["sampling"].as_str().unwrap_or_default()
    );
    // Reports made before retrieval guidance drew without it.
    if let Some(scale) = report["retrieval_guidance"]
        .as_f64()
        .filter(|&scale| scale != 1.0)
    {
        out.push_str(&format!("Retrieval guidance {scale}.\n"));
    }
    if let Some(bias) = report["copy_bias"].as_f64().filter(|&bias| bias != 0.0) {
        out.push_str(&format!("Images drawn at copy bias {bias}.\n"));
    }
    if let Some(bias) = report["caption_copy_bias"]
        .as_f64()
        .filter(|&bias| bias != 0.0)
    {
        out.push_str(&format!("Captions written at copy bias {bias}.\n"));
    }
    let ran = |task: &str| report["models"]["ra-cm3"][task].is_object();
    if ran("caption_to_image_seen") {
        out.push_str(&format!(
            "Seen entities: {} entities of the train split, evenly spaced, one Twemoji drawing \
             each, scored against those drawings.\n",
            report["seen_entities"]
        ));
    }
    if ran("caption_to_image") || ran("caption_to_image_seen") || ran("image_to_caption") {
        out.push_str("\n| task | metric | RA-CM3 | baseline |\n| --- | --- | --- | --- |\n");
        for (task, metric, label) in [
            ("caption_to_image", "fid", "FID (lower is better)"),
            ("caption_to_image", "kid", "KID"),
            ("caption_to_image", "clip_fid", "CLIP-FID"),
            ("caption_to_image", "clip_score", "CLIPScore"),
            ("caption_to_image_seen", "fid", "FID, seen entities"),
            ("caption_to_image_seen", "kid", "KID, seen entities"),
            (
                "caption_to_image_seen",
                "clip_fid",
                "CLIP-FID, seen entities",
            ),
            (
                "caption_to_image_seen",
                "clip_score",
                "CLIPScore, seen entities",
            ),
            ("image_to_caption", "cider_d", "CIDEr-D"),
            ("image_to_caption", "rouge_l", "ROUGE-L"),
            ("image_to_caption", "bleu_4", "BLEU-4"),
        ] {
            if ran(task) {
                out.push_str(&format!(
                    "| {task} | {label} | {} | {} |\n",
                    cell("ra-cm3", task, metric),
                    cell("baseline", task, metric)
                ));
            }
        }
    }
    for (model, title) in [("ra-cm3", "RA-CM3"), ("baseline", "baseline")] {
        if report["models"][model]["caption_to_image"].is_object() {
            out.push_str(&format!(
                "\n{title}, seed 0, the first 32 held-out captions:\n\n![{title} samples]({model}-samples.png)\n"
            ));
        }
    }
    if let Some(share) = report["models"]["ra-cm3"]["retrieved_same_entity_share"].as_f64() {
        out.push_str(&format!(
            "\nShare of held-out captions whose retrieved documents include the same entity: \
             {share:.3}.\n"
        ));
    }
    let ra = &report["models"]["ra-cm3"];
    if let (Some(copied), Some(same)) = (
        ra["copied_code_share"].as_f64(),
        ra["copied_same_entity_share"].as_f64(),
    ) {
        out.push_str(&format!(
            "RA-CM3's drawings (seed 0) copy {copied:.3} of their codes from a retrieved image \
             at the same place; {same:.3} of them follow a retrieved image of the caption's \
             entity for more than half their codes.\n"
        ));
    }
    out.push_str(&against_target(report));
    let ablation_table = |out: &mut String, rows: Vec<(String, &Value)>| {
        out.push_str(
            "| setting | FID | KID | CLIP-FID | CLIPScore |\n| --- | --- | --- | --- | --- |\n",
        );
        for (name, row) in rows {
            out.push_str(&image_row(&name, row));
        }
    };
    if let Some(rows) = report["ablation"].as_object() {
        out.push_str(
            "\n## Ablations at inference (RA-CM3, caption to image)\n\n\
             The same trained model with other retrieval settings.\n\n",
        );
        ablation_table(
            &mut out,
            rows.iter().map(|(name, row)| (name.clone(), row)).collect(),
        );
    }
    if let Some(rows) = report["trained_ablation"].as_array() {
        out.push_str(
            "\n## Ablations at training (caption to image)\n\n\
             One training run per setting, each drawn with the K it was trained with.\n\n",
        );
        let named = rows
            .iter()
            .map(|row| (row["setting"].as_str().unwrap_or_default().to_owned(), row));
        ablation_table(&mut out, named.collect());
    }
    out.push_str(&diagnostics(report));
    if let Some(queries) = report["retrieval"]["queries"].as_object() {
        out.push_str(&format!(
            "\n## Retrieval alone\n\nEach held-out entity queried by its caption and by its Twemoji \
             drawing (never in the memory); K = {}. A query is right when a retrieved document \
             shows the same entity.\n\n\
             | query | same entity first | same entity among the K | near copies skipped | \
             redundant skipped |\n| --- | --- | --- | --- | --- |\n",
            report["retrieval"]["k"]
        ));
        for (name, row) in queries {
            out.push_str(&format!(
                "| {name} | {:.3} | {:.3} | {} | {} |\n",
                row["same_entity_at_1"].as_f64().unwrap_or(f64::NAN),
                row["same_entity_in_k"].as_f64().unwrap_or(f64::NAN),
                row["near_copies_skipped"],
                row["redundant_skipped"]
            ));
        }
    }
    let update = &report["knowledge_update"];
    if update.is_object() {
        out.push_str(&format!(
            "\n## Knowledge update\n\nThe {} documents of the held-out entities were removed \
             from a copy of the memory, then added back ({:.2} s, no retraining). RA-CM3 drew \
             every held-out caption before and after, with the same seeds.\n\n\
             | metric | before | after |\n| --- | --- | --- |\n",
            update["documents_added"],
            update["update_seconds"].as_f64().unwrap_or(f64::NAN)
        ));
        let phase = |name: &str, metric: &str| summary_cell(&update["phases"][name][metric]);
        for (metric, label) in [
            ("fid", "FID"),
            ("kid", "KID"),
            ("clip_fid", "CLIP-FID"),
            ("clip_score", "CLIPScore"),
            ("retrieved_same_entity_share", "retrieved the same entity"),
            ("memory_documents", "documents in memory"),
        ] {
            out.push_str(&format!(
                "| {label} | {} | {} |\n",
                phase("before", metric),
                phase("after", metric)
            ));
        }
    }
    let few_shot = &report["few_shot"];
    if few_shot.is_object() {
        out.push_str(&format!(
            "\n## Few-shot classification in context (Fashion-MNIST)\n\n{}-way with made-up \
             words for the classes; {} episodes, the same for every setting; chance {}. \
             Accuracy ± 95% interval.\n\n| setting |",
            few_shot["ways"], few_shot["queries"], few_shot["chance"]
        ));
        for shots in SHOTS {
            out.push_str(&format!(
                " {shots} shot{} |",
                if shots == 1 { "" } else { "s" }
            ));
        }
        out.push_str(&format!("\n| --- |{}\n", " --- |".repeat(SHOTS.len())));
        if let Some(settings) = few_shot["settings"].as_object() {
            for (name, accuracy) in settings {
                out.push_str(&format!("| {name} |"));
                for shots in SHOTS {
                    let cell = &accuracy[shots.to_string()];
                    out.push_str(&format!(
                        " {:.3} ± {:.3} |",
                        cell["accuracy"].as_f64().unwrap_or(f64::NAN),
                        cell["ci95"].as_f64().unwrap_or(f64::NAN)
                    ));
                }
                out.push('\n');
            }
        }
        out.push_str("\n![few-shot accuracy against shots, one panel per setting](few-shot.png)\n");
    }
    out
}

/// The rows the generators are read against, the oracle's, and the copy probe; empty when
/// neither task ran.
fn diagnostics(report: &Value) -> String {
    let rows = &report["diagnostics"];
    let oracle = &report["oracle"];
    if !rows.is_object() && !oracle.is_object() {
        return String::new();
    }
    let models = &report["models"];
    let mut out = String::from(
        "\n## What the generators are read against\n\nThe same held-out images and metrics; \
         every image drawn goes through the VQGAN, so its reconstructions of the real \
         images (the tokenizer floor) are the best a generator can score.\n\n\
         | row | FID | KID | CLIP-FID | CLIPScore |\n| --- | --- | --- | --- | --- |\n",
    );
    let image_rows = [
        (
            "tokenizer floor: the real images through the VQGAN",
            &rows["tokenizer_floor"],
        ),
        (
            "retrieval only: the top retrieved image, raw",
            &rows["retrieval_only_raw"],
        ),
        (
            "retrieval only: the top retrieved image through the VQGAN",
            &rows["retrieval_only_vqgan"],
        ),
        (
            "RA-CM3, the entity's own documents in context (oracle)",
            &oracle["caption_to_image"],
        ),
        (
            "RA-CM3, retrieved documents in context",
            &models["ra-cm3"]["caption_to_image"],
        ),
        (
            "baseline, no retrieval",
            &models["baseline"]["caption_to_image"],
        ),
    ];
    for (name, row) in image_rows.into_iter().filter(|(_, row)| row.is_object()) {
        out.push_str(&image_row(name, row));
    }
    out.push_str(
        "\n| captions (greedy) | CIDEr-D | ROUGE-L | non-empty |\n| --- | --- | --- | --- |\n",
    );
    let caption_rows = [
        (
            "retrieval only: the top retrieved caption",
            &rows["retrieval_only_caption"],
        ),
        ("RA-CM3, oracle context", &oracle["image_to_caption"]),
        ("RA-CM3, retrieved", &models["ra-cm3"]["image_to_caption"]),
        ("baseline", &models["baseline"]["image_to_caption"]),
    ];
    for (name, row) in caption_rows.into_iter().filter(|(_, row)| row.is_object()) {
        out.push_str(&format!(
            "| {name} | {} | {} | {} of {} |\n",
            summary_cell(&row["cider_d"]),
            summary_cell(&row["rouge_l"]),
            row["non_empty"],
            row["samples"]
        ));
    }
    if let Some(probes) = rows["copy_probe"].as_object() {
        out.push_str(
            "\nCopy probe: mean loss per token (nats) on the held-out documents' image codes \
             and captions with, in front, a document of the same entity in another rendition, \
             a random document of another entity, or nothing. Random minus same is what the \
             model takes from a relevant document.\n\n\
             | model | tokens | same entity | random | none | random − same |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for (model, probe) in probes {
            for (tokens, key, gap) in [
                ("image", "image", "gap_image"),
                ("caption", "caption", "gap_caption"),
            ] {
                let loss = |setting: &str| summary_cell(&probe["settings"][setting][key]);
                out.push_str(&format!(
                    "| {model} | {tokens} | {} | {} | {} | {} |\n",
                    loss("same_entity"),
                    loss("random"),
                    loss("none"),
                    summary_cell(&probe[gap])
                ));
            }
        }
    }
    out
}

/// The Markdown report as a page of its own, tables and sample grids included.
pub fn html(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES);
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, parser);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>racm3 evaluation</title><style>\
         body{{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}\
         img{{max-width:100%;image-rendering:pixelated}}</style></head><body>\n{body}</body></html>\n"
    )
}

/// The experiment's target, from the paper's gains on COCO: on held-out entities RA-CM3's
/// FID at least 30% below the baseline's and its CIDEr-D at least 20% above; whether the
/// report's means meet it. Empty when neither task ran.
fn against_target(report: &Value) -> String {
    let mean = |model: &str, task: &str, metric: &str| {
        let value = &report["models"][model][task][metric];
        value["mean"].as_f64().or_else(|| value.as_f64())
    };
    // The slack keeps a change that prints as exactly the target from reading "not met".
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let mut lines = Vec::new();
    if let (Some(ra), Some(base)) = (
        mean("ra-cm3", "caption_to_image", "fid"),
        mean("baseline", "caption_to_image", "fid"),
    ) {
        let change = (ra - base) / base;
        lines.push(format!(
            "- FID {ra:.1} against {base:.1}: {:+.1}%, where the target is -30% or lower: {}.",
            100.0 * change,
            verdict(change <= -0.30 + 1e-9)
        ));
    }
    if let (Some(ra), Some(base)) = (
        mean("ra-cm3", "image_to_caption", "cider_d"),
        mean("baseline", "image_to_caption", "cider_d"),
    ) {
        let line = if base > 0.0 {
            let change = (ra - base) / base;
            format!(
                "- CIDEr-D {ra:.3} against {base:.3}: {:+.1}%, where the target is +20% or more: {}.",
                100.0 * change,
                verdict(change >= 0.20 - 1e-9)
            )
        } else {
            format!(
                "- CIDEr-D {ra:.3} against the baseline's 0: {} by the rule, which any positive \
                 score meets; read the scores themselves.",
                verdict(ra > 0.0)
            )
        };
        lines.push(line);
    }
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "\n## Against the target\n\nThe paper's gains on COCO set it: on held-out entities, \
         RA-CM3's FID at least 30% below the baseline's and its CIDEr-D at least 20% above.\n\n{}\n",
        lines.join("\n")
    )
}

/// A table row of an image task's scores: FID, KID, CLIP-FID, CLIPScore.
fn image_row(name: &str, row: &Value) -> String {
    format!(
        "| {name} | {} | {} | {} | {} |\n",
        summary_cell(&row["fid"]),
        summary_cell(&row["kid"]),
        summary_cell(&row["clip_fid"]),
        summary_cell(&row["clip_score"])
    )
}

/// A number, or a mean ± spread, as a table cell.
fn summary_cell(value: &Value) -> String {
    match (value.get("mean"), value.as_f64()) {
        (Some(mean), _) => format!(
            "{:.3} ± {:.3}",
            mean.as_f64().unwrap_or(f64::NAN),
            value["std"].as_f64().unwrap_or(f64::NAN)
        ),
        (None, Some(v)) => format!("{v:.3}"),
        _ => "not measured".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(fid: (f64, f64), cider: (f64, f64)) -> Value {
        let model = |fid: f64, cider: f64| {
            json!({
                "caption_to_image": {"fid": {"mean": fid, "std": 1.0}},
                "image_to_caption": {"cider_d": cider},
            })
        };
        json!({"models": {"ra-cm3": model(fid.0, cider.0), "baseline": model(fid.1, cider.1)}})
    }

    #[test]
    fn the_target_is_judged_from_the_means() {
        let met = against_target(&report((69.0, 100.0), (0.6, 0.5)));
        assert!(met.contains("-31.0%") && met.contains("+20.0%"), "{met}");
        assert_eq!(met.matches(": met.").count(), 2, "{met}");

        let short = against_target(&report((95.0, 100.0), (0.55, 0.5)));
        assert!(
            short.contains("-5.0%") && short.contains("+10.0%"),
            "{short}"
        );
        assert_eq!(short.matches(": not met.").count(), 2, "{short}");

        let zero = against_target(&report((95.0, 100.0), (0.04, 0.0)));
        assert!(zero.contains("any positive"), "{zero}");
        assert!(against_target(&json!({"models": {}})).is_empty());
    }
}
