//! Drawing an SVG emoji into the small RGB image every document holds, with resvg, and
//! refusing what an emoji has no business containing.
//!
//! An emoji package is data from the network, so before resvg sees a file it is checked:
//! at most [`MAX_SVG_BYTES`], well-formed XML without a DTD, nested at most [`MAX_DEPTH`]
//! deep, no `<script>` or `<foreignObject>`, no reference that leaves the file (every
//! `href` is `#fragment` or `data:`, every `url(…)` a `#fragment`, no `@import`), and a
//! `viewBox` of finite, positive sides at most [`MAX_VIEW_SIDE`]. resvg itself reads no
//! file and fetches nothing (no resources folder, no fonts), and the output is a fixed
//! `size × size`, so one icon's time and memory are bounded by its size.

use image::{Rgb, RgbImage};
use resvg::{tiny_skia, usvg};

use crate::error::{Error, Result};

/// The largest SVG accepted; emoji drawings are a few kilobytes.
pub const MAX_SVG_BYTES: usize = 1 << 20;
/// The deepest element nesting accepted; emoji drawings nest a few groups.
pub const MAX_DEPTH: usize = 64;
/// The largest `viewBox` side accepted, in user units.
pub const MAX_VIEW_SIDE: f64 = 10_000.0;

/// `svg` drawn on white into a `size × size` RGB image, fitted and centred; `what` (the
/// file and icon) names it in every error.
pub fn rasterize(svg: &[u8], what: &str, size: u32) -> Result<RgbImage> {
    let refuse = |problem: String| Error::Svg {
        what: what.to_owned(),
        problem,
    };
    if svg.len() > MAX_SVG_BYTES {
        return Err(refuse(format!(
            "{} bytes, more than the {MAX_SVG_BYTES} an emoji may have",
            svg.len()
        )));
    }
    let text = std::str::from_utf8(svg).map_err(|err| refuse(format!("not UTF-8: {err}")))?;
    check(text).map_err(refuse)?;
    let options = usvg::Options {
        resources_dir: None,
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(text, &options).map_err(|err| refuse(err.to_string()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size, size)
        .ok_or_else(|| refuse(format!("cannot draw at {size}x{size}")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    let (width, height) = (tree.size().width(), tree.size().height());
    let scale = size as f32 / width.max(height);
    let offset = |side: f32| (size as f32 - side * scale) / 2.0;
    let transform =
        tiny_skia::Transform::from_row(scale, 0.0, 0.0, scale, offset(width), offset(height));
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    // The background is opaque white, so every pixel is opaque and un-premultiplied as is.
    let rgb = pixmap
        .pixels()
        .iter()
        .flat_map(|pixel| [pixel.red(), pixel.green(), pixel.blue()])
        .collect();
    RgbImage::from_raw(size, size, rgb)
        .ok_or_else(|| refuse("pixel buffer of the wrong size".into()))
}

/// The checks of the module header, on the document's text.
fn check(text: &str) -> std::result::Result<(), String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(text, options)
        .map_err(|err| format!("malformed XML: {err}"))?;
    let root = document.root_element();
    if root.tag_name().name() != "svg" {
        return Err(format!(
            "the root element is <{}>, not <svg>",
            root.tag_name().name()
        ));
    }
    for node in root.descendants().filter(|node| node.is_element()) {
        let depth = node.ancestors().filter(|a| a.is_element()).count();
        if depth > MAX_DEPTH {
            return Err(format!(
                "elements nested {depth} deep, more than {MAX_DEPTH}"
            ));
        }
        let name = node.tag_name().name();
        if matches!(name, "script" | "foreignObject") {
            return Err(format!("a <{name}> element: emoji hold drawings only"));
        }
        for attribute in node.attributes() {
            let value = attribute.value().trim();
            let external = match attribute.name() {
                "href" => !(value.starts_with('#') || value.starts_with("data:")),
                _ => leaves_the_file(value),
            };
            if external {
                return Err(format!(
                    "<{name} {}=\"{value}\"> refers outside the file",
                    attribute.name()
                ));
            }
        }
        if name == "style" {
            let css: String = node.descendants().filter_map(|n| n.text()).collect();
            if css.contains("@import") || leaves_the_file(&css) {
                return Err("a <style> that refers outside the file".into());
            }
        }
    }
    if let Some(view_box) = root.attribute("viewBox") {
        let numbers: Vec<f64> = view_box
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<f64>()
                    .map_err(|_| format!("viewBox \"{view_box}\""))
            })
            .collect::<std::result::Result<_, _>>()?;
        let [_, _, width, height] = numbers[..] else {
            return Err(format!("viewBox \"{view_box}\" does not have four numbers"));
        };
        let fine = |side: f64| side.is_finite() && side > 0.0 && side <= MAX_VIEW_SIDE;
        if !(fine(width) && fine(height)) {
            return Err(format!(
                "viewBox \"{view_box}\": sides must be positive and at most {MAX_VIEW_SIDE}"
            ));
        }
    }
    Ok(())
}

/// True when a CSS value names something outside the file: `url(...)` other than
/// `url(#fragment)`.
fn leaves_the_file(value: &str) -> bool {
    value.match_indices("url(").any(|(start, _)| {
        let target = value[start + 4..].trim_start_matches([' ', '\'', '"']);
        !target.starts_with('#')
    })
}

/// The colour covering most of `image` that is not white, quantized to 32 levels a
/// channel: what a drawing of a red apple is mostly coloured.
pub fn dominant_colour(image: &RgbImage) -> Option<Rgb<u8>> {
    let mut counts = std::collections::HashMap::new();
    for pixel in image.pixels().filter(|p| p.0.iter().any(|&c| c < 240)) {
        *counts.entry(pixel.0.map(|c| c / 32)).or_insert(0usize) += 1;
    }
    let (bins, _) = counts
        .into_iter()
        .max_by_key(|&(bins, count)| (count, bins))?;
    Some(Rgb(bins.map(|bin| bin * 32 + 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED_SQUARE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36"><rect x="6" y="6" width="24" height="24" fill="#d00"/></svg>"##;

    // A red square on a 36-unit canvas fills the middle two thirds of the 64x64 image in
    // red, the border stays white, and red is the dominant colour.
    #[test]
    fn draws_fitted_on_white() {
        let image = rasterize(RED_SQUARE.as_bytes(), "square.svg", 64).unwrap();
        assert_eq!(image.dimensions(), (64, 64));
        assert_eq!(image.get_pixel(2, 2), &Rgb([255, 255, 255]));
        assert_eq!(image.get_pixel(32, 32), &Rgb([0xdd, 0, 0]));
        assert_eq!(dominant_colour(&image), Some(Rgb([208, 16, 16])));
    }

    // Each kind of bad input is refused with the file named and the reason given.
    #[test]
    fn refuses_what_an_emoji_should_not_hold() {
        let nested = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8">{}{}</svg>"#,
            "<g>".repeat(MAX_DEPTH + 1),
            "</g>".repeat(MAX_DEPTH + 1)
        );
        let cases = [
            (
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect",
                "malformed XML",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#,
                "<script>",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="http://example.com/a.png"/></svg>"#,
                "refers outside",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="/etc/passwd"/></svg>"#,
                "refers outside",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(http://x/y#a)"/></svg>"#,
                "refers outside",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(x.css);</style></svg>"#,
                "<style>",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1e9 1e9"/>"#,
                "viewBox",
            ),
            (
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 NaN 4"/>"#,
                "viewBox",
            ),
            (nested.as_str(), "nested"),
            (r#"<html/>"#, "not <svg>"),
        ];
        for (svg, reason) in cases {
            let err = rasterize(svg.as_bytes(), "pkg/bad.svg", 64)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("pkg/bad.svg: "), "{err}");
            assert!(err.contains(reason), "{reason}: {err}");
        }
        let huge = vec![b' '; MAX_SVG_BYTES + 1];
        assert!(
            rasterize(&huge, "huge.svg", 64)
                .unwrap_err()
                .to_string()
                .contains("bytes")
        );
        // Internal references stay allowed.
        let gradient = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><defs><linearGradient id="g"><stop offset="0" stop-color="#00f"/></linearGradient></defs><rect width="4" height="4" fill="url(#g)"/></svg>"##;
        let image = rasterize(gradient.as_bytes(), "gradient.svg", 8).unwrap();
        assert_eq!(image.get_pixel(4, 4), &Rgb([0, 0, 255]));
    }
}
