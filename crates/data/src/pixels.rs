//! Pixels in and out: decoding image bytes into the RGB every document holds, encoding
//! them as PNG, and laying several out in one picture.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

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

/// The image file at `path` as RGB, the path named in every error.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    decode_rgb(&bytes, &path.display().to_string())
}

/// The extensions of the image files racm3 reads.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// Every image file (by [`IMAGE_EXTENSIONS`], any case) directly in `dir`, in name order.
pub fn read_image_folder(dir: &Path) -> Result<Vec<RgbImage>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    paths.iter().map(|path| read_image(path)).collect()
}

/// `image` as PNG bytes; `what` names it in the error.
pub fn encode_png(image: &RgbImage, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|source| Error::Encode {
            what: what.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// Writes `image` to `path` as PNG, atomically (temp file, then rename).
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    crate::write_atomic(path, &encode_png(image, &path.display().to_string())?)
}

/// `images` in rows of `columns` on white, every cell the size of the first image, with
/// `gap` pixels of white around and between cells. No images give one blank cell's row.
pub fn image_grid(images: &[&RgbImage], columns: usize, gap: u32) -> RgbImage {
    let (width, height) = images.first().map_or((1, 1), |image| image.dimensions());
    let columns = columns.max(1) as u32;
    let rows = images.len().div_ceil(columns as usize).max(1) as u32;
    let mut grid = RgbImage::from_pixel(
        columns * (width + gap) + gap,
        rows * (height + gap) + gap,
        Rgb([255; 3]),
    );
    for (index, image) in images.iter().enumerate() {
        let (column, row) = (index as u32 % columns, index as u32 / columns);
        let x = gap + column * (width + gap);
        let y = gap + row * (height + gap);
        image::imageops::replace(&mut grid, *image, i64::from(x), i64::from(y));
    }
    grid
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
    use image::{Rgba, RgbaImage};

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

    // A PNG written and read back gives the same pixels.
    #[test]
    fn png_round_trips() {
        let image = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 40, y as u8 * 80, 7]));
        let bytes = encode_png(&image, "test").unwrap();
        assert_eq!(decode_rgb(&bytes, "test").unwrap(), image);
    }

    // Cells go left to right, then down, each at gap + index · (size + gap); the rest is
    // white, and a short last row leaves white cells.
    #[test]
    fn grid_places_cells_in_rows() {
        let red = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(2, 2, Rgb([0, 0, 255]));
        let grid = image_grid(&[&red, &blue, &red], 2, 1);
        assert_eq!(grid.dimensions(), (2 * 3 + 1, 2 * 3 + 1));
        assert_eq!(grid.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(4, 2), &Rgb([0, 0, 255]));
        assert_eq!(grid.get_pixel(2, 5), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(5, 5), &Rgb([255; 3]));
        assert_eq!(grid.get_pixel(0, 0), &Rgb([255; 3]));
        let row = image_grid(&[&red, &blue], 2, 0);
        assert_eq!(row.dimensions(), (4, 2));
        assert_eq!(row.get_pixel(3, 1), &Rgb([0, 0, 255]));
    }
}
