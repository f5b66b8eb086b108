//! Decoding image bytes into the RGB pixels every document holds.

use image::{DynamicImage, Rgb, RgbImage};

use crate::error::{Error, Result};

/// Decodes PNG, JPEG or WebP bytes (the format is sniffed, not taken from a file name) into
/// RGB. Transparent pixels are composited over white: emoji are drawn on a transparent
/// background, and white is what a page would show behind them.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage> {
    let image = image::load_from_memory(bytes).map_err(|source| Error::Image {
        path: name.to_owned(),
        source,
    })?;
    Ok(flatten_on_white(image))
}

fn flatten_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(px[3]);
        let blend =
            |channel: u8| ((u32::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        *out = Rgb([blend(px[0]), blend(px[1]), blend(px[2])]);
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};
    use std::io::Cursor;

    fn png_bytes(image: &RgbaImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    // Opaque pixels keep their colour, transparent ones turn white, half-transparent blend.
    #[test]
    fn alpha_is_composited_over_white() {
        let mut image = RgbaImage::new(3, 1);
        image.put_pixel(0, 0, Rgba([10, 20, 30, 255]));
        image.put_pixel(1, 0, Rgba([10, 20, 30, 0]));
        image.put_pixel(2, 0, Rgba([0, 0, 0, 128]));
        let rgb = decode_rgb(&png_bytes(&image), "t.png").unwrap();
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([10, 20, 30]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([255, 255, 255]));
        assert_eq!(rgb.get_pixel(2, 0), &Rgb([127, 127, 127]));
    }

    // A truncated PNG is an error that names the file, not a panic.
    #[test]
    fn truncated_png_names_the_file() {
        let bytes = png_bytes(&RgbaImage::new(8, 8));
        let err = decode_rgb(&bytes[..bytes.len() / 2], "cut.png").unwrap_err();
        assert!(
            err.to_string().starts_with("cut.png: not a readable image"),
            "{err}"
        );
    }
}
